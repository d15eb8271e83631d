"""The SessionService RPCs: create, inspect, list and delete sessions, and the server's stats.

Each RPC goes through the gateway's unary path (authenticated from its metadata, one access-log line, errors as
gRPC statuses with google.rpc details), so there is no second authentication here. A principal acts only on its
own project's sessions.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2, struct_pb2

from integration_api.context import RequestContext
from integration_api.errors import InvalidArgument
from integration_api.gateway import Gateway
from integration_api.proto import integration_api_pb2 as pb
from integration_api.requests import decode_parameters
from integration_api.sessions.stats import Latency, StatsSnapshot
from integration_api.sessions.store import Owner, Session
from providers.types import AssistantMessage, ChatMessage, JsonValue, SystemMessage, UserMessage

SERVICE = "SessionService"
CHAT_RPC = "StreamChat"


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def _packed(value: JsonValue) -> any_pb2.Any:
    message = struct_pb2.Value()
    if isinstance(value, dict):
        message.struct_value.update(value)
    elif isinstance(value, list):
        message.list_value.extend(value)
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif value is None:
        message.null_value = struct_pb2.NULL_VALUE
    else:
        message.string_value = str(value)
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def message_proto(message: ChatMessage) -> pb.Message:
    if isinstance(message, UserMessage):
        return pb.Message(role="user", user=pb.UserMessage(content=message.content))
    if isinstance(message, SystemMessage):
        return pb.Message(role="system", system=pb.SystemMessage(content=message.content))
    if isinstance(message, AssistantMessage):
        calls = [
            pb.ToolCall(
                id=call.id,
                type="function",
                function=pb.FunctionCall(name=call.name, arguments=call.arguments),
                index=call.index,
            )
            for call in message.tool_calls
        ]
        contents = [message.text] if message.text else []
        return pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=contents, toolCalls=calls))
    tools = [pb.ToolMessage.Tool(name=r.name, id=r.call_id, content=r.content) for r in message.results]
    return pb.Message(role="tool", tool=pb.ToolMessage(tools=tools))


def session_info(session: Session, ttl_s: float, *, with_messages: bool = False) -> pb.SessionInfo:
    return pb.SessionInfo(
        sessionId=session.id,
        organizationId=session.owner.organization_id,
        projectId=session.owner.project_id,
        provider=session.provider,
        model=session.model,
        systemPrompt=session.system_prompt,
        modelParameters={key: _packed(value) for key, value in session.parameters.items()},
        messages=[message_proto(message) for message in session.messages] if with_messages else [],
        createdAtMs=_ms(session.created_at),
        lastUsedAtMs=_ms(session.last_used_at),
        expiresAtMs=_ms(session.last_used_at + ttl_s),
        messageCount=len(session.messages),
        requestCount=session.requests,
        inputTokens=session.input_tokens,
        outputTokens=session.output_tokens,
        trimmedMessages=session.trimmed,
    )


def _latency(latency: Latency) -> pb.LatencyStats:
    return pb.LatencyStats(
        count=latency.count, averageMs=latency.average_ms, p50Ms=latency.p50_ms, p95Ms=latency.p95_ms
    )


def stats_response(snapshot: StatsSnapshot, sessions_active: int) -> pb.GetServerStatsResponse:
    providers = [
        pb.ProviderStats(
            provider=p.provider,
            requestsTotal=p.requests,
            requestsSucceeded=p.succeeded,
            requestsFailed=p.failed,
            inflightRequests=p.in_flight,
            timeToFirstToken=_latency(p.time_to_first_token),
            totalTime=_latency(p.total_time),
        )
        for p in snapshot.providers
    ]
    return pb.GetServerStatsResponse(
        uptimeSeconds=snapshot.uptime_s,
        requestsTotal=snapshot.requests,
        requestsSucceeded=snapshot.succeeded,
        requestsFailed=snapshot.failed,
        activeStreams=snapshot.active_streams,
        inflightRequests=snapshot.in_flight,
        sessionsActive=sessions_active,
        sessionsCreated=snapshot.sessions_created,
        timeToFirstToken=_latency(snapshot.time_to_first_token),
        totalTime=_latency(snapshot.total_time),
        providers=providers,
    )


def _parameters(parameters: Mapping[str, any_pb2.Any]) -> dict[str, JsonValue]:
    decoded = decode_parameters(parameters)
    for key in decoded:
        if not key.startswith("model."):
            raise InvalidArgument(f"model parameter {key!r} must be named model.<name>")
    return decoded


class SessionServicer:
    """SessionService, served from the gateway's sessions and stats."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._sessions = gateway.state.sessions
        self._stats = gateway.state.stats

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSessionResponse:
        gateway = self._gateway
        provider = request.providerName or gateway.settings.default_provider

        async def create(request_context: RequestContext) -> pb.CreateSessionResponse:
            spec = gateway.registry.get(provider)  # unknown: INVALID_ARGUMENT; not enabled: UNIMPLEMENTED
            if CHAT_RPC not in spec.rpcs:
                raise InvalidArgument(f"provider {provider!r} does not chat, so it cannot hold a session")
            owner = Owner.of(request_context.principal)
            parameters = _parameters(request.modelParameters)
            model = parameters.get("model.name")
            await gateway.state.policy.check_scopes(
                request_context.principal, provider, model if isinstance(model, str) else ""
            )
            session = await self._sessions.create(owner, provider, request.systemPrompt, parameters)
            return pb.CreateSessionResponse(session=session_info(session, self._sessions.ttl_s))

        return await gateway._unary(context, "CreateSession", provider, create)

    async def GetSessionInfo(
        self, request: pb.GetSessionInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSessionInfoResponse:
        async def get(request_context: RequestContext) -> pb.GetSessionInfoResponse:
            session = await self._sessions.get(Owner.of(request_context.principal), request.sessionId)
            info = session_info(session, self._sessions.ttl_s, with_messages=request.includeMessages)
            return pb.GetSessionInfoResponse(session=info)

        return await self._gateway._unary(context, "GetSessionInfo", "", get)

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        async def list_sessions(request_context: RequestContext) -> pb.ListSessionsResponse:
            sessions = await self._sessions.list(Owner.of(request_context.principal), request.limit)
            return pb.ListSessionsResponse(sessions=[session_info(s, self._sessions.ttl_s) for s in sessions])

        return await self._gateway._unary(context, "ListSessions", "", list_sessions)

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSessionResponse:
        async def delete(request_context: RequestContext) -> pb.DeleteSessionResponse:
            await self._sessions.delete(Owner.of(request_context.principal), request.sessionId)
            return pb.DeleteSessionResponse(sessionId=request.sessionId)

        return await self._gateway._unary(context, "DeleteSession", "", delete)

    async def GetServerStats(
        self, request: pb.GetServerStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetServerStatsResponse:
        async def stats(request_context: RequestContext) -> pb.GetServerStatsResponse:
            return stats_response(self._stats.snapshot(), await self._sessions.count_active())

        return await self._gateway._unary(context, "GetServerStats", "", stats)
