"""The HTTP front door: OpenAI-compatible API, gRPC-JSON/WebSocket bridge, web chat page, on the gRPC server's
event loop and Gateway.

Nothing here re-implements auth, providers, streaming or errors: each route authenticates with
`Gateway.authenticate` (``integration_api.http.auth`` turns HTTP headers into the gRPC metadata it reads), builds
its provider with `Gateway.provider`, and translates `GatewayError` at its own edge.

Stack: Starlette on uvicorn (httptools parser, the running asyncio loop). uvicorn's `Server` is an ordinary
coroutine, so it runs on the very event loop that grpc.aio serves on and shares the one `Gateway` object;
granian runs its own Rust event loop and worker threads, which cannot share our loop or objects (see
``integration_api.http.server`` for the measurement).
"""
