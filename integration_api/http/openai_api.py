"""The OpenAI-compatible API under ``/v1``: chat completions, embeddings, the model list.

Any OpenAI SDK or tool works against the gateway by changing its base URL to ``http://HOST:PORT/v1``, its API
key to a gateway key (or a service JWT) and its model to ``provider/model``. Request mapping rules live in
``integration_api.http.openai_request``, the response and SSE formats in ``openai_sse``, errors in
``openai_errors``, the chat endpoint itself in ``openai_chat``.

``GET /v1/models`` lists one entry per enabled provider, with the id ``<provider>/*`` ("any model of this
provider": replace ``*`` with the vendor's model name) and ``owned_by`` the provider.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from integration_api import access_log
from integration_api.context import RequestContext
from integration_api.errors import GatewayError, Internal, Unavailable
from integration_api.gateway import Gateway
from integration_api.http import openai_errors, openai_sse
from integration_api.http.auth import authenticate, peer_of
from integration_api.http.openai_chat import ChatCompletions
from integration_api.http.openai_request import credential, json_object, parse_embeddings
from integration_api.settings import Settings

_JSON = "application/json"


def openai_routes(gateway: Gateway, settings: Settings) -> list[BaseRoute]:
    async def embeddings(request: Request) -> Response:
        return await _embeddings(gateway, request)

    async def models(request: Request) -> Response:
        return await _models(gateway, request)

    async def unknown(request: Request) -> Response:
        error = openai_errors.UnknownPath(f"unknown path: {request.method} {request.url.path}")
        return openai_errors.error_response(error)

    return [
        Route("/v1/chat/completions", ChatCompletions(gateway, settings), methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/{path:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


async def _embeddings(gateway: Gateway, request: Request) -> Response:
    try:
        if gateway.lifecycle.draining:
            raise Unavailable("the server is shutting down; send the request to another instance")
        stream = await authenticate(gateway, request.headers, peer_of(request.scope.get("client")))
        parsed = parse_embeddings(json_object(await request.body()), gateway.registry)
        vendor_credential = credential(request.headers)
    except GatewayError as error:
        return openai_errors.error_response(error)
    model = str(parsed.call.parameters.get("model.name", ""))
    context = RequestContext(stream, "Embedding", parsed.provider, "", model)
    try:
        with gateway.provider(context, vendor_credential) as provider:
            result = await provider.embed(parsed.call)
    except GatewayError as error:
        access_log.record(context, error.status, openai_errors.http_status(error))
        return openai_errors.error_response(error)
    except Exception as exc:
        internal = Internal(f"unexpected {type(exc).__name__}")
        access_log.record(context, internal.status, internal.http_status)
        return openai_errors.error_response(internal)
    access_log.record(context, "OK", 200)
    return Response(openai_sse.embeddings(parsed.model, result, as_base64=parsed.base64), media_type=_JSON)


async def _models(gateway: Gateway, request: Request) -> Response:
    try:
        await authenticate(gateway, request.headers, peer_of(request.scope.get("client")))
    except GatewayError as error:
        return openai_errors.error_response(error)
    data = [
        {"id": f"{spec.name}/*", "object": "model", "created": 0, "owned_by": spec.name} for spec in gateway.registry
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)
