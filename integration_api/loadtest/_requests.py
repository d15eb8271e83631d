"""The wire side of the load generator: channels, and ChatRequests serialized once and stamped with an id.

Every request of a run is the same but for its `requestId`, so the request is serialized once and each send
appends the id field to those bytes (a later field wins in protobuf), which keeps the client cheap enough that
it is not what a benchmark measures. The StreamChat method is bound with that bytes serializer.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, json_format, struct_pb2

from integration_api.loadtest._config import LoadConfig
from integration_api.proto import integration_api_pb2 as pb

STREAM_CHAT = "/integration_api.UnifiedProviderService/StreamChat"
_REQUEST_ID_TAG = b"\x1a"  # field 3 (requestId), wire type 2 (length-delimited)
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards")


def prompt_text(words: int) -> str:
    """A user message of exactly `words` words."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(words))


def packed_value(value: Any) -> any_pb2.Any:
    """A JSON value as the google.protobuf.Value packed in Any that model parameters carry."""
    packed = any_pb2.Any()
    packed.Pack(json_format.ParseDict(value, struct_pb2.Value()))
    return packed


def request_template(config: LoadConfig) -> bytes:
    """The serialized ChatRequest of the run, without its requestId."""
    parameters: dict[str, Any] = {_model_key(k): v for k, v in config.parameters.items()}
    if config.model:
        parameters.setdefault("model.name", config.model)
    credential = struct_pb2.Struct()
    credential.update(dict(config.credential))
    request = pb.ChatRequest(
        providerName=config.provider,
        credential=pb.Credential(id=1, value=credential),
        conversations=[pb.Message(role="user", user=pb.UserMessage(content=prompt_text(config.prompt_words)))],
        modelParameters={key: packed_value(value) for key, value in parameters.items()},
    )
    return request.SerializeToString()


def with_request_id(template: bytes, request_id: str) -> bytes:
    encoded = request_id.encode()
    return template + _REQUEST_ID_TAG + _varint(len(encoded)) + encoded


def cancel_request(request_id: str) -> bytes:
    return pb.ChatRequest(requestId=request_id, action=pb.REQUEST_ACTION_CANCEL).SerializeToString()


def open_channel(config: LoadConfig, index: int) -> grpc.aio.Channel:
    """One channel with its own connection (channels never share a subchannel here)."""
    options: list[tuple[str, Any]] = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.primary_user_agent", f"integration-api-bench/{index}"),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if config.server_name:
        options.append(("grpc.ssl_target_name_override", config.server_name))
    if config.tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=config.root_cert)
        return grpc.aio.secure_channel(config.target, credentials, options=options)
    return grpc.aio.insecure_channel(config.target, options=options)


def stream_chat_method(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable:
    identity: Any = None  # grpc sends bytes as they are when there is no serializer
    return channel.stream_stream(
        STREAM_CHAT, request_serializer=identity, response_deserializer=pb.ChatResponse.FromString
    )


def _model_key(key: str) -> str:
    return key if key.startswith("model.") else f"model.{key}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
