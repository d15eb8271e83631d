"""Conversations kept by the gateway (SessionService): the client's typed results and their protocol conversions.

`SessionInfo` describes one session (its counters, and its history when asked for); `ServerStats` is the answer
of GetServerStats. Plain frozen dataclasses, like everything in ``_types``: no generated class leaves the client.
Times are Unix seconds (floats), as `time.time()` gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, json_format, struct_pb2

from integration_api.client._convert import MODEL_PREFIX, model_parameters
from integration_api.client._results import message_from_proto
from integration_api.client._types import Message, ParameterValue
from integration_api.proto import integration_api_pb2 as pb


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One conversation kept by the gateway. `messages` is empty unless asked for (``include_messages=True``).

    `parameters` are the session's model parameters without the ``model.`` prefix (`model` is ``name``'s value);
    `message_count` counts the history now, `trimmed_messages` what the trim policy has dropped from it so far.
    """

    id: str
    provider: str
    model: str = ""
    system_prompt: str = ""
    organization_id: str = ""
    project_id: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    created_at: float = 0.0
    last_used_at: float = 0.0
    expires_at: float = 0.0
    message_count: int = 0
    request_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    trimmed_messages: int = 0


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latencies of `count` requests, in milliseconds."""

    count: int = 0
    average_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ProviderStats:
    provider: str
    requests_total: int = 0
    requests_succeeded: int = 0
    requests_failed: int = 0
    in_flight_requests: int = 0
    time_to_first_token: LatencyStats = LatencyStats()
    total_time: LatencyStats = LatencyStats()


@dataclass(frozen=True, slots=True)
class ServerStats:
    """The gateway process's counters since it started (GetServerStats); `sessions_active` counts the store's."""

    uptime_s: float = 0.0
    requests_total: int = 0
    requests_succeeded: int = 0
    requests_failed: int = 0
    active_streams: int = 0
    in_flight_requests: int = 0
    sessions_active: int = 0
    sessions_created: int = 0
    time_to_first_token: LatencyStats = LatencyStats()
    total_time: LatencyStats = LatencyStats()
    providers: tuple[ProviderStats, ...] = ()


# --- requests -------------------------------------------------------------------------------------------------


def create_session_request(
    provider: str | None, model: str | None, system: str | None, parameters: Mapping[str, ParameterValue] | None
) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(
        providerName=provider or "",
        systemPrompt=system or "",
        modelParameters=model_parameters(model, parameters),
    )


# --- results --------------------------------------------------------------------------------------------------


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000


def _value(packed: any_pb2.Any) -> Any:
    """A parameter's plain value; one the client cannot read as a ``google.protobuf.Value`` stays packed JSON."""
    value = struct_pb2.Value()
    if packed.Unpack(value):
        return json_format.MessageToDict(value)
    return json_format.MessageToDict(packed)


def session_info(info: pb.SessionInfo) -> SessionInfo:
    return SessionInfo(
        id=info.sessionId,
        provider=info.provider,
        model=info.model,
        system_prompt=info.systemPrompt,
        organization_id=info.organizationId,
        project_id=info.projectId,
        parameters={key.removeprefix(MODEL_PREFIX): _value(value) for key, value in info.modelParameters.items()},
        messages=tuple(message_from_proto(message) for message in info.messages),
        created_at=_seconds(info.createdAtMs),
        last_used_at=_seconds(info.lastUsedAtMs),
        expires_at=_seconds(info.expiresAtMs),
        message_count=info.messageCount,
        request_count=info.requestCount,
        input_tokens=info.inputTokens,
        output_tokens=info.outputTokens,
        trimmed_messages=info.trimmedMessages,
    )


def _latency(latency: pb.LatencyStats) -> LatencyStats:
    return LatencyStats(latency.count, latency.averageMs, latency.p50Ms, latency.p95Ms)


def server_stats(response: pb.GetServerStatsResponse) -> ServerStats:
    providers = tuple(
        ProviderStats(
            provider=p.provider,
            requests_total=p.requestsTotal,
            requests_succeeded=p.requestsSucceeded,
            requests_failed=p.requestsFailed,
            in_flight_requests=p.inflightRequests,
            time_to_first_token=_latency(p.timeToFirstToken),
            total_time=_latency(p.totalTime),
        )
        for p in response.providers
    )
    return ServerStats(
        uptime_s=response.uptimeSeconds,
        requests_total=response.requestsTotal,
        requests_succeeded=response.requestsSucceeded,
        requests_failed=response.requestsFailed,
        active_streams=response.activeStreams,
        in_flight_requests=response.inflightRequests,
        sessions_active=response.sessionsActive,
        sessions_created=response.sessionsCreated,
        time_to_first_token=_latency(response.timeToFirstToken),
        total_time=_latency(response.totalTime),
        providers=providers,
    )
