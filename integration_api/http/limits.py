"""The request-body limit of the HTTP front door (`http_max_body_bytes`), as ASGI middleware.

A body larger than the limit is refused with `RequestTooLarge` (413) raised from the app's own ``receive()``: the
route that reads the body answers it in its own error shape (OpenAI's, the bridge's). A declared Content-Length
over the limit is refused before a byte of the body is read; a chunked body as soon as it grows past the limit.
If the error escapes a route, the middleware answers a plain 413 itself.

Before refusing, the rest of the body is read and dropped (up to `DISCARD_FACTOR` times the limit): a server that
answers and closes while the client is still sending makes the client's kernel reset the connection, and the
client sees a broken connection instead of the 413.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_api.errors import InvalidArgument

DISCARD_FACTOR = 4


class RequestTooLarge(InvalidArgument):
    """The request body is larger than `http_max_body_bytes`."""

    http_status = 413
    default_human_message = "The request is too large."


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = _content_length(scope)
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                if declared <= DISCARD_FACTOR * limit:
                    await _discard(receive, DISCARD_FACTOR * limit)
                raise RequestTooLarge(f"the request body ({declared} bytes) is larger than the {limit}-byte limit")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _discard(receive, DISCARD_FACTOR * limit - received)
                    raise RequestTooLarge(f"the request body is larger than the {limit}-byte limit")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except RequestTooLarge as error:
            if started:
                raise
            body = error.message.encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a body, at most `budget` bytes of it."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return
