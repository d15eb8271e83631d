"""How the REPL writes: rich on a terminal (colours, tables), plain lines when stdout is not a TTY.

Everything the REPL shows goes through a `Renderer`: status lines (`info`, `warn`, `error`), a reply as it
streams (`delta`, then `reply_end` or `reply_failed`), key/value blocks and tables. `PlainRenderer` writes bare
text with no escape sequence, so that piped output (``integration-api chat < script > log``) stays readable and
greppable; `RichRenderer` is the same content styled. Nothing here knows about the gateway.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

Rows = Sequence[tuple[str, str]]


class Renderer:
    """The plain renderer; `RichRenderer` overrides the presentation, never the content."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._mid_line = False  # a reply's text has been written without its final newline

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout  # looked up each time: prompt_toolkit may redirect sys.stdout

    def _line(self, text: str) -> None:
        self._end_reply_line()
        self.out.write(text + "\n")
        self.out.flush()

    def _end_reply_line(self) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False

    # --- status lines -------------------------------------------------------------------------------------------

    def info(self, text: str) -> None:
        self._line(text)

    def warn(self, text: str) -> None:
        self._line(f"! {text}")

    def error(self, text: str) -> None:
        self._line(f"error: {text}")

    # --- a reply ------------------------------------------------------------------------------------------------

    def delta(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self._mid_line = not text.endswith("\n")

    def reply_end(self, summary: str) -> None:
        self._line(f"[{summary}]")

    def reply_failed(self, text: str) -> None:
        self._line(f"[{text}]")

    # --- blocks -------------------------------------------------------------------------------------------------

    def block(self, title: str, rows: Rows) -> None:
        """A titled list of name/value pairs (`/info`, `/stats`, `/server`)."""
        width = max((len(name) for name, _ in rows), default=0)
        self._line(title)
        for name, value in rows:
            self._line(f"  {name.ljust(width)}  {value}")

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A titled table (`/sessions`, `/help`); an empty one says so."""
        self._line(title)
        if not rows:
            self._line("  (none)")
            return
        widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
        for cells in (headers, *rows):
            self._line("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)).rstrip())

    def clear(self) -> None:
        """Nothing to clear in a pipe; a marker line keeps a log honest about what was asked."""
        self._line("--- cleared ---")


class RichRenderer(Renderer):
    """The same content on a terminal: styled status lines, real tables, ``/clear`` clears the screen."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        # highlight=False: rich would colour every number inside a line, splitting the text with escape codes.
        self._console = Console(file=out, force_terminal=True, highlight=False, soft_wrap=True)

    def _styled(self, text: str, style: str) -> None:
        self._end_reply_line()
        self._console.print(Text(text, style=style))

    def info(self, text: str) -> None:
        self._styled(text, "cyan")

    def warn(self, text: str) -> None:
        self._styled(f"! {text}", "yellow")

    def error(self, text: str) -> None:
        self._styled(f"error: {text}", "bold red")

    def delta(self, text: str) -> None:
        self._console.out(text, end="", highlight=False)
        self._console.file.flush()
        self._mid_line = not text.endswith("\n")

    def reply_end(self, summary: str) -> None:
        self._styled(summary, "dim")

    def reply_failed(self, text: str) -> None:
        self._styled(text, "yellow")

    def block(self, title: str, rows: Rows) -> None:
        self._end_reply_line()
        grid = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
        grid.add_column(style="bold")
        grid.add_column()
        for name, value in rows:
            grid.add_row(Text(name), Text(value))
        self._console.print(grid)

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self._end_reply_line()
        if not rows:
            self._console.print(Text(f"{title}: none", style="cyan"))
            return
        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header)
        for cells in rows:
            table.add_row(*(Text(cell) for cell in cells))
        self._console.print(table)

    def clear(self) -> None:
        self._mid_line = False
        self._console.clear()


def renderer_for(out: TextIO) -> Renderer:
    """Rich on a terminal, plain text otherwise (a pipe, a file)."""
    return RichRenderer() if out.isatty() else Renderer()
