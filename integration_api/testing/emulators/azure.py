"""Emulator of the Azure OpenAI HTTP API: OpenAI's wire format under Azure's paths, auth and annotations.

The SDK's endpoint is the emulator's origin. Chat and embeddings are per deployment
(``/openai/deployments/{deployment}/chat/completions`` and ``.../embeddings``); ``/openai/models`` lists the
resource's models and ``/openai/moderations`` is where ``AsyncAzureOpenAI.moderations`` posts. Every request
needs the ``api-version`` query parameter (else 404) and the ``api-key`` header (else 401).

Streams differ from OpenAI's: the first event is the prompt annotation (empty ``choices``, empty ``id`` and
``model``, ``prompt_filter_results``); every choice carries ``content_filter_results``, and a script finishing
with ``content_filter`` ends with ``finish_reason: "content_filter"`` and a filtered category. Errors use Azure's
``{"error": {"code", "message"}}`` (400s keep OpenAI's shape, as Azure passes them through); a 429 carries
``retry-after`` and ``retry-after-ms``; answers carry ``apim-request-id`` and ``x-request-id``.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from integration_api.testing.emulators.base import SSEItem
from integration_api.testing.emulators.openai import CREATED, OpenAIEmulator, openai_error_body, retry_after_header

DEFAULT_API_VERSION = "2024-10-21"
MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "text-embedding-3-small")
_FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_ERROR_CODES = {401: "401", 403: "403", 404: "DeploymentNotFound", 429: "429", 500: "InternalServerError"}
_ERROR_CODES[503] = "ServiceUnavailable"


def content_filter_results(filtered_category: str | None = None) -> dict[str, Any]:
    """Azure's per-category verdicts; `filtered_category` is the one that tripped the filter, if any."""
    return {
        name: {"filtered": True, "severity": "high"}
        if name == filtered_category
        else {"filtered": False, "severity": "safe"}
        for name in _FILTER_CATEGORIES
    }


def azure_error_body(status: int, message: str) -> dict[str, Any]:
    if status == 400:  # request validation errors come through in OpenAI's own shape
        return openai_error_body(status, message)
    return {"error": {"code": _ERROR_CODES.get(status, str(status)), "message": message}}


class AzureEmulator(OpenAIEmulator):
    vendor = "azure"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._request_ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """The resource endpoint: the SDK adds ``/openai/...`` itself."""
        return self.origin

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/openai/deployments/{deployment}/chat/completions", self.chat),
            web.post("/openai/deployments/{deployment}/embeddings", self.embeddings),
            web.get("/openai/models", self.models),
            web.post("/openai/moderations", self.moderations),
        ]

    def reject(self, request: web.Request) -> web.Response | None:
        if not request.query.get("api-version"):
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if request.headers.get("api-key", "").strip():
            return None
        return self.error_response(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource.",
        )

    def request_headers(self) -> dict[str, str]:
        number = next(self._request_ids)
        request_id = f"{number:08x}-0000-4000-8000-{number:012x}"
        return {"apim-request-id": request_id, "x-request-id": request_id, "x-ms-region": "East US"}

    def model_of(self, request: web.Request, body: dict[str, Any]) -> str:
        return request.match_info.get("deployment") or super().model_of(request, body)

    def prologue(self) -> list[SSEItem]:
        annotation = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": self.completion_extras()["prompt_filter_results"],
        }
        return [SSEItem(annotation)]

    def choice_extras(self, finish_reason: str | None) -> dict[str, Any]:
        filtered = "violence" if finish_reason == "content_filter" else None
        return {"content_filter_results": content_filter_results(filtered)}

    def completion_extras(self) -> dict[str, Any]:
        results = {**content_filter_results(), "jailbreak": {"filtered": False, "detected": False}}
        return {"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": results}]}

    def models_body(self) -> dict[str, Any]:
        capabilities = {"chat_completion": True, "completion": False, "embeddings": False, "inference": True}
        data = [
            {
                "id": model,
                "object": "model",
                "created_at": CREATED,
                "status": "succeeded",
                "capabilities": capabilities,
                "lifecycle_status": "generally-available",
            }
            for model in MODELS
        ]
        return {"object": "list", "data": data}

    def error_response(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = self.request_headers()
        if retry_after is not None:
            headers["retry-after"] = retry_after_header(retry_after)
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        return web.json_response(azure_error_body(status, message), status=status, headers=headers)

    def error_event(self, status: int, message: str) -> SSEItem:
        return SSEItem(azure_error_body(status, message))


EMULATOR = AzureEmulator
