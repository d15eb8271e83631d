"""Emulator of Gemini on Vertex AI ({region}-aiplatform.googleapis.com), and of Google's OAuth token endpoint.

``POST /token`` is the service-account token exchange google-auth performs: a form with
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion=<a signed JWT>``; the emulator checks
the JWT's shape and claims (not its signature: it does not know the key) and answers
``{"access_token", "expires_in", "token_type": "Bearer"}``. Tests point the key's ``token_uri`` at
``origin + "/token"``. Every other route wants ``Authorization: Bearer <an access token it issued>``.

The model methods live under ``/{v1beta1|v1}/projects/{p}/locations/{r}/publishers/google/models/{model}:{method}``
and speak the Gemini wire format (`GeminiEmulator`'s), plus Vertex's ``predict`` for the text-embedding models
and Vertex's own embedding answer shapes; ``GET .../publishers/google/models`` lists Google's models and
``GET /{version}/projects/{p}/locations/{r}/models`` the project's (none).

`VertexAIEmulator.credential()` is a ready `vertexai` credential for it: a service account key with a real RSA key
(generated once per process) whose ``token_uri`` is this emulator.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import time
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integration_api.testing.emulators.base import RecordedRequest, Script
from integration_api.testing.emulators.gemini import MODELS, GeminiEmulator, Handler, dimensions_of, texts_of
from integration_api.testing.emulators.openai import embedding_vector

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CREATE_TIME = "2025-01-01T00:00:00.000000Z"  # fixed, so answers are deterministic
_MODEL_PATH = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{target}"


def jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The claims of a well-formed, unexpired RS256 JWT bearer assertion, else None."""
    segments = assertion.split(".")
    if len(segments) != 3 or not all(segments):
        return None
    try:
        header, claims = (json.loads(_b64url(segment)) for segment in segments[:2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        return None
    if not claims.get("iss") or not (claims.get("scope") or claims.get("aud")):
        return None
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time():
        return None
    return claims


@functools.cache
def private_key_pem() -> str:
    """An RSA private key (PKCS#8 PEM) for emulated service accounts; generated once, as that takes a moment."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class VertexAIEmulator(GeminiEmulator):
    vendor = "vertexai"
    api_versions = ("v1beta1", "v1")

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._tokens = itertools.count(1)
        self.issued_tokens: set[str] = set()
        self.token_claims: list[dict[str, Any]] = []  # the claims of each accepted assertion, in order
        self.refuse_tokens = False  # answer every exchange as Google does a key it does not know

    def service_account_key(self, project: str = "emulated-project") -> dict[str, str]:
        """A service account JSON key (as a dict) whose token_uri is this emulator."""
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "emulated-key-id",
            "private_key": private_key_pem(),
            "client_email": f"gateway@{project}.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "token_uri": f"{self.origin}/token",
        }

    def credential(self, project: str = "emulated-project", region: str = "us-central1") -> dict[str, str]:
        """A `vertexai` credential for this emulator (its base_url must be allowed, as 127.0.0.1 is in tests)."""
        key = json.dumps(self.service_account_key(project))
        return {"project_id": project, "region": region, "service_account_key": key, "base_url": self.base_url}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/token", self.token),
            web.post(_MODEL_PATH, self.model_method),
            web.get("/{version}/publishers/google/models", self.list_models),
            web.get("/{version}/projects/{project}/locations/{location}/models", self.list_project_models),
        ]

    # --- Gemini hooks ----------------------------------------------------------------------------------------

    def reject(self, request: web.Request) -> web.Response | None:
        if request.match_info.get("version") not in self.api_versions:
            return self.error_response(404, "Method not found.")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.issued_tokens:
            return self.error_response(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        return None

    def methods(self) -> dict[str, Handler]:
        return {**super().methods(), "predict": self.predict}

    def embedding_options(self, item: dict[str, Any]) -> dict[str, Any]:
        options = item.get("embedContentConfig")
        return options if isinstance(options, dict) else {}

    def response_extras(self) -> dict[str, Any]:
        return {"createTime": CREATE_TIME}

    def models_body(self) -> dict[str, Any]:
        models = [
            {
                "name": f"publishers/google/models/{model}",
                "versionId": "001",
                "openSourceCategory": "PROPRIETARY",
                "launchStage": "GA",
            }
            for model in MODELS
        ]
        return {"publisherModels": models}

    # --- handlers --------------------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        recorded.completed = True
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        claims = jwt_claims(assertion) if isinstance(assertion, str) else None
        if claims is None:
            return _oauth_error("invalid_grant", "Invalid JWT: the assertion is malformed or expired.")
        if self.refuse_tokens:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        token = f"ya29.emulated-{next(self._tokens)}"
        self.issued_tokens.add(token)
        self.token_claims.append(claims)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def list_project_models(self, request: web.Request) -> web.StreamResponse:
        begun = await self.begin(request)
        if isinstance(begun, web.Response):
            return begun
        begun[0].completed = True
        return web.json_response({})  # a project without models of its own: Google omits the empty list

    async def embed_content(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        body = recorded.body if isinstance(recorded.body, dict) else {}
        text = texts_of(body.get("content"))
        tokens = len(text.split())
        recorded.completed = True
        answer = {
            "embedding": {"values": embedding_vector(text, dimensions_of(self.embedding_options(body), script))},
            "usageMetadata": {"promptTokenCount": tokens, "totalTokenCount": tokens},
            "truncated": False,
        }
        return web.json_response(answer)

    async def predict(
        self, request: web.Request, recorded: RecordedRequest, script: Script, model: str
    ) -> web.StreamResponse:
        """Vertex's embedding API of the text-embedding-* models."""
        body = recorded.body if isinstance(recorded.body, dict) else {}
        parameters = body.get("parameters")
        dimensions = dimensions_of(parameters if isinstance(parameters, dict) else {}, script)
        texts = [str(item.get("content", "")) for item in body.get("instances") or () if isinstance(item, dict)]
        predictions = [
            {
                "embeddings": {
                    "values": embedding_vector(text, dimensions),
                    "statistics": {"truncated": False, "token_count": len(text.split())},
                }
            }
            for text in texts
        ]
        recorded.completed = True
        metadata = {"billableCharacterCount": sum(len(text) for text in texts)}
        return web.json_response({"predictions": predictions, "metadata": metadata})


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


EMULATOR = VertexAIEmulator
