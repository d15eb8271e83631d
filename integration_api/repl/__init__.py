"""The interactive terminal client: `integration-api chat` with no message.

It connects to a gateway, creates a session (SessionService) and sends each typed line as the session's only new
message, streaming the reply as it arrives; slash commands inspect and steer it (``/help`` lists them). Modules:
``loop`` (read, dispatch, Ctrl-C), ``commands`` (the table of slash commands), ``conversation`` (the link to
the gateway: client, stream, session, reconnection), ``render`` and ``views`` (what is shown, rich or plain),
``lines`` (prompt_toolkit or a pipe), ``stats`` (the client-side counters), ``options``.
"""

from integration_api.repl.loop import run_repl
from integration_api.repl.options import ReplOptions, parse_parameters

__all__ = ["ReplOptions", "parse_parameters", "run_repl"]
