"""gRPC server bootstrap shared by the services.

One place sets up what every service needs: an asyncio gRPC server with message-size limits,
standard health checking and reflection, per-RPC Prometheus metrics with status codes, optional
TLS, and a graceful SIGTERM (health goes NOT_SERVING, new calls are refused, in-flight calls get
a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from segue.config import ServerConfig, describe
from segue.log import get_logger
from segue.metrics import RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS, serve_metrics

log = get_logger("segue.server")

# Registers a servicer on the server and returns the full names of the services it added.
Register = Callable[[grpc.aio.Server], Sequence[str]]
ShutdownHook = Callable[[], Awaitable[None]]


def _code_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return str(code)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Records latency, in-flight count and final status code of every segue.v1 RPC.

    An exception that escapes a handler becomes INTERNAL with a short message, so clients
    never see a bare UNKNOWN and the error is logged once, here.
    """

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        path: str = handler_call_details.method
        if handler is None or not path.startswith("/segue."):
            return handler
        method = path.rsplit("/", 1)[-1]
        return _wrap_handler(handler, self._service, method)


@contextlib.asynccontextmanager
async def _observed(
    context: grpc.aio.ServicerContext[Any, Any], service: str, method: str
) -> AsyncIterator[None]:
    """Records one RPC's latency, in-flight count and final status code.

    An exception that escapes the handler is logged once and sent as INTERNAL with a short
    message, so clients never see a bare UNKNOWN.
    """
    RPC_IN_FLIGHT.labels(service, method).inc()
    started = time.perf_counter()
    code = "OK"
    try:
        yield
        code = _code_name(context)
    except (asyncio.CancelledError, GeneratorExit):
        code = "CANCELLED"
        raise
    except grpc.aio.AbortError:
        code = _code_name(context)
        raise
    except Exception as exc:
        code = "INTERNAL"
        log.exception("unhandled error", service=service, method=method)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc!r}")
    finally:
        RPC_IN_FLIGHT.labels(service, method).dec()
        RPC_DURATION.labels(service, method).observe(time.perf_counter() - started)
        RPC_REQUESTS.labels(service, method, code).inc()


def _wrap_handler(handler: Any, service: str, method: str) -> Any:
    if handler.response_streaming:
        behavior: Any = handler.stream_stream if handler.request_streaming else handler.unary_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with _observed(context, service, method):
                async for response in behavior(request, context):
                    yield response

        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        wrapped: Any = streaming
    else:
        unary_behavior: Any = (
            handler.stream_unary if handler.request_streaming else handler.unary_unary
        )

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with _observed(context, service, method):
                return await unary_behavior(request, context)

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        wrapped = unary
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


@dataclass
class RunningServer:
    """A started server: its bound port and the means to stop it gracefully."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped)
    services: Sequence[str]
    grace_s: float
    on_shutdown: list[ShutdownHook] = field(default_factory=list)
    _stopping: bool = False

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuses new calls, lets in-flight calls finish up to the grace period."""
        if self._stopping:
            return
        self._stopping = True
        for name in (*self.services, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self.on_shutdown:
            await hook()
        await self.server.stop(self.grace_s if grace_s is None else grace_s)


def grpc_options(config: ServerConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # Long-lived streams: keep idle connections alive through load balancers.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


async def start_server(
    config: ServerConfig,
    register: Register,
    *,
    on_shutdown: Sequence[ShutdownHook] = (),
    serve_metrics_port: bool = True,
) -> RunningServer:
    """Builds and starts a server on config.host:config.grpc_port (0 picks a free port)."""
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(config.service)], options=grpc_options(config)
    )
    services = list(register(server))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*services, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    address = f"{config.host}:{config.grpc_port}"
    if config.tls_cert and config.tls_key:
        credentials = grpc.ssl_server_credentials(
            [(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())]
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    await server.start()
    if serve_metrics_port:
        serve_metrics(config.metrics_port, config.host)
    return RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        services=services,
        grace_s=config.shutdown_grace_s,
        on_shutdown=list(on_shutdown),
    )


async def serve_forever(
    config: ServerConfig,
    register: Register,
    *,
    on_shutdown: Sequence[ShutdownHook] = (),
    extra_log: dict[str, Any] | None = None,
) -> None:
    """Runs a service until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(config, register, on_shutdown=on_shutdown)
    log.info(
        "serving",
        service=config.service,
        grpc_port=running.port,
        metrics_port=config.metrics_port,
        config=describe(config),
        **(extra_log or {}),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", service=config.service, grace_s=config.shutdown_grace_s)
    await running.stop()
    log.info("stopped", service=config.service)

