"""Emulator of Replicate's HTTP API for streamed language-model predictions.

Predictions are created with ``POST /v1/models/{owner}/{name}/predictions`` or ``POST /v1/predictions`` (body
``version``), answer 201 with the prediction (``status: "starting"``, ``urls.get``/``cancel``/``web``, and
``urls.stream`` when the body asks for ``stream: true``). The stream URL is on the emulator (or on
`stream_origin`, to play a stream host elsewhere); reading it plays the script as Replicate's server-sent events:
one ``event: output`` per word whose data is the plain text, then ``event: done`` with ``data: {}``, every event
with an ``id:`` line. After the stream ended, ``GET /v1/predictions/{id}`` shows the prediction succeeded with
its output and ``metrics`` (``input_token_count``, ``output_token_count``); ``POST /v1/predictions/{id}/cancel``
cancels it (the ids are kept in `cancelled`, and a stream still playing ends with ``done {"reason":
"canceled"}``). ``GET /v1/account`` serves VerifyCredential. Auth is ``Authorization: Bearer <token>`` (the API
also takes the older ``Token <token>``). Errors are problem details: ``{"title", "detail", "status"}`` as
``application/problem+json``; an in-stream error is ``event: error`` with ``{"detail"}`` then ``done {"reason":
"error"}``. Only the create and account calls take a script; stream reads, gets and cancels follow the
prediction's own. Replicate has no tool calling and reports no finish reason, so those script fields are ignored.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from integration_api.testing.emulators.base import Emulator, RecordedRequest, Script, SSEItem

CREATED_AT = "2025-01-01T00:00:00.000000Z"
EVENT_TIME = 1_735_689_600  # Replicate's event ids are "<unix time>:<n>"
DEFAULT_VERSION = hashlib.sha256(b"emulated-version").hexdigest()
VERSIONED_MODEL = "emulator/versioned-model"
ACCOUNT = {"type": "user", "username": "emulated-user", "name": "Emulated User", "github_url": None}
# (model, version) of a create request's body; None when it names no valid version.
_Resolver = Callable[[dict[str, Any]], tuple[str, str] | None]
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    422: "Input validation failed",
    429: "Request was throttled",
    500: "Internal server error",
    503: "Service unavailable",
}


@dataclass
class EmulatedPrediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    script: Script
    stream: bool
    status: str = "starting"
    output: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def succeed(self) -> None:
        self.status = "succeeded"
        self.output = self.script.text_chunks()
        self.metrics = {
            "predict_time": 0.25,
            "total_time": 0.3,
            "time_to_first_token": 0.05,
            "input_token_count": self.script.input_tokens,
            "output_token_count": self.script.usage_output(),
            "tokens_per_second": 40.0,
        }


class ReplicateEmulator(Emulator):
    vendor = "replicate"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.predictions: dict[str, EmulatedPrediction] = {}
        self.cancelled: list[str] = []
        self.stream_origin: str | None = None  # where stream URLs point; None: this emulator's origin
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/models/{owner}/{name}/predictions", self.create_for_model),
            web.post("/v1/predictions", self.create_for_version),
            web.get("/v1/predictions/{id}", self.get_prediction),
            web.post("/v1/predictions/{id}/cancel", self.cancel_prediction),
            web.get("/v1/streams/{id}", self.stream),
            web.get("/v1/account", self.account),
        ]

    # --- vendor hooks ----------------------------------------------------------------------------------------

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"retry-after": _seconds(retry_after)} if retry_after is not None else {}
        body = {"title": _TITLES.get(status, "Error"), "detail": message, "status": status}
        return web.json_response(body, status=status, headers=headers, content_type="application/problem+json")

    def error_event(self, status: int, message: str) -> SSEItem:
        """Replicate's in-stream error carries no status: ``{"detail"}``, then the ``done`` that ends the stream."""
        error = orjson.dumps({"detail": message}).decode()
        return _events(("error", self._event_id(), error), ("done", self._event_id(), '{"reason": "error"}'))

    def stall_over(self, request: web.Request) -> bool:
        """A stalled stream moves on once its prediction is cancelled, so it can end with ``done {"canceled"}``."""
        prediction = self.predictions.get(request.match_info.get("id", ""))
        return prediction is not None and prediction.status == "canceled"

    # --- handlers --------------------------------------------------------------------------------------------

    async def create_for_model(self, request: web.Request) -> web.StreamResponse:
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        return await self._create(request, lambda body: (model, DEFAULT_VERSION))

    async def create_for_version(self, request: web.Request) -> web.StreamResponse:
        def model_and_version(body: dict[str, Any]) -> tuple[str, str] | None:
            version = body.get("version")
            if not isinstance(version, str) or not version:
                return None
            model, _, version_id = version.rpartition(":")  # "owner/name:id" is accepted as well as a bare id
            return model or VERSIONED_MODEL, version_id

        return await self._create(request, model_and_version)

    async def get_prediction(self, request: web.Request) -> web.StreamResponse:
        found = await self._prediction(request)
        if isinstance(found, web.Response):
            return found
        recorded, prediction = found
        recorded.completed = True
        return web.json_response(self.prediction_body(prediction))

    async def cancel_prediction(self, request: web.Request) -> web.StreamResponse:
        found = await self._prediction(request)
        if isinstance(found, web.Response):
            return found
        recorded, prediction = found
        self.cancelled.append(prediction.id)
        if prediction.status in ("starting", "processing"):
            prediction.status = "canceled"
        recorded.completed = True
        return web.json_response(self.prediction_body(prediction))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        found = await self._prediction(request)
        if isinstance(found, web.Response):
            return found
        recorded, prediction = found
        if not prediction.stream:
            recorded.completed = True
            return self.error_response(404, "This prediction was not created with stream: true.")
        prediction.status = "processing"
        return await self.stream_sse(request, recorded, prediction.script, self._stream_items(prediction))

    async def account(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if (denied := self._reject(request)) is not None:
            return denied
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        recorded.completed = True
        return web.json_response(ACCOUNT)

    # --- answers ---------------------------------------------------------------------------------------------

    def prediction_body(self, prediction: EmulatedPrediction) -> dict[str, Any]:
        urls = {
            "get": f"{self.origin}/v1/predictions/{prediction.id}",
            "cancel": f"{self.origin}/v1/predictions/{prediction.id}/cancel",
            "web": f"https://replicate.com/p/{prediction.id}",
        }
        if prediction.stream:
            urls["stream"] = f"{self.stream_origin or self.origin}/v1/streams/{prediction.id}"
        finished = prediction.status in ("succeeded", "failed", "canceled")
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": prediction.input,
            "logs": "",
            "output": prediction.output if prediction.status == "succeeded" else None,
            "data_removed": False,
            "error": prediction.error,
            "status": prediction.status,
            "source": "api",
            "created_at": CREATED_AT,
            "started_at": CREATED_AT if prediction.status != "starting" else None,
            "completed_at": CREATED_AT if finished else None,
            "urls": urls,
            "metrics": prediction.metrics,
        }

    def _stream_items(self, prediction: EmulatedPrediction) -> Iterator[SSEItem]:
        """The script as Replicate's events. A generator: the prediction's state follows what was sent."""
        for piece in prediction.script.text_chunks():
            if prediction.status == "canceled":
                yield _events(("done", self._event_id(), '{"reason": "canceled"}'))
                return
            yield _events(("output", self._event_id(), piece), content=True)
        # Finished before `done` goes out, so a client that reads the prediction right after sees it succeeded.
        prediction.succeed()
        yield _events(("done", self._event_id(), "{}"))

    # --- helpers ---------------------------------------------------------------------------------------------

    async def _create(self, request: web.Request, resolve: _Resolver) -> web.StreamResponse:
        recorded = await self.record(request)
        if (denied := self._reject(request)) is not None:
            recorded.completed = True
            return denied
        script = self.next_script()
        if (early := await self.fault_before_response(script, recorded)) is not None:
            return early
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model_input = body.get("input")
        resolved = resolve(body)
        recorded.completed = True
        if not isinstance(model_input, dict):
            return self.error_response(422, "- input: Invalid type. Expected: object, given: null")
        if resolved is None:
            return self.error_response(
                422, "The specified version does not exist (or perhaps you don't have permission to use it?)"
            )
        model, version = resolved
        prediction = EmulatedPrediction(
            f"emu{next(self._ids):023d}", model, version, model_input, script, body.get("stream") is True
        )
        if not prediction.stream:
            prediction.succeed()  # without a stream the emulated model finishes at once
        self.predictions[prediction.id] = prediction
        return web.json_response(self.prediction_body(prediction), status=201)

    async def _prediction(self, request: web.Request) -> tuple[RecordedRequest, EmulatedPrediction] | web.Response:
        """Record and authenticate a request about an existing prediction; the error answer, or the prediction."""
        recorded = await self.record(request)
        denied = self._reject(request)
        prediction = self.predictions.get(request.match_info["id"])
        if denied is None and prediction is not None:
            return recorded, prediction
        recorded.completed = True
        return denied or self.error_response(404, "The requested resource could not be found.")

    def _reject(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme in ("Bearer", "Token") and token.strip():
            return None
        return self.error_response(401, "You did not pass a valid authentication token")

    def _event_id(self) -> str:
        return f"{EVENT_TIME + next(self._event_ids)}:0"


def _events(*events: tuple[str, str, str], content: bool = False) -> SSEItem:
    """Replicate events (name, id, data) as one item.

    ``base.encode_sse`` writes one ``event:`` line and one ``data:`` line; Replicate's events also carry an ``id:``
    line, multi-line text is several ``data:`` lines, and an error is followed by its ``done`` event, so the
    extra lines are folded into the item's `event` and `data` fields.
    """
    (name, event_id, data), *rest = events
    text = "\ndata: ".join(data.split("\n"))
    for more_name, more_id, more_data in rest:
        more_text = "\ndata: ".join(more_data.split("\n"))
        text += f"\n\nevent: {more_name}\nid: {more_id}\ndata: {more_text}"
    return SSEItem(text, event=f"{name}\nid: {event_id}", content=content)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


EMULATOR = ReplicateEmulator
