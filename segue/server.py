"""gRPC server bootstrap shared by the services.

One place sets up what every service needs: an asyncio gRPC server with message-size limits,
standard health checking and reflection, the service interceptor (segue/interceptor.py: bearer
tokens and scopes, metrics, per-client stream caps, INVALID_ARGUMENT for undecodable requests,
error ids), TLS or mutual TLS, and a graceful SIGTERM: health goes NOT_SERVING, streams are
asked to drain, in-flight calls get a grace period, and only then are stores and pools closed.

Secure by default: without a token file (SEGUE_AUTH_TOKENS_FILE) a server refuses to start
unless SEGUE_INSECURE_DEV=1 says this is a development machine.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from segue.config import ServerConfig, describe
from segue.interceptor import ClientStreams, ServiceInterceptor
from segue.log import get_logger
from segue.metrics import serve_metrics
from segue.security.auth import Authenticator
from segue.security.tls import server_credentials
from segue.security.tokens import TokenFile

log = get_logger("segue.server")

# Registers a servicer on the server and returns the full names of the services it added.
Register = Callable[[grpc.aio.Server], Sequence[str]]
ShutdownHook = Callable[[], Awaitable[None]]


@dataclass
class RunningServer:
    """A started server: its bound port and the means to stop it gracefully."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped)
    services: Sequence[str]
    grace_s: float
    on_shutdown: list[ShutdownHook] = field(default_factory=list)
    on_stopped: list[ShutdownHook] = field(default_factory=list)
    _stopping: bool = False

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuses new calls, lets in-flight calls finish up to the grace period, then closes.

        `on_shutdown` hooks (asking streams to finish) run first; `on_stopped` hooks (closing
        stores and pools) run only after the server has stopped, so no call still in flight
        meets a closed store.
        """
        if self._stopping:
            return
        self._stopping = True
        for name in (*self.services, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self.on_shutdown:
            await hook()
        await self.server.stop(self.grace_s if grace_s is None else grace_s)
        for hook in self.on_stopped:
            await hook()


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


def authenticator(config: ServerConfig) -> Authenticator:
    """The token check `config` asks for; refuses to run open unless insecure_dev says so."""
    if not config.auth_tokens_file:
        if not config.insecure_dev:
            raise RuntimeError(
                f"{config.service}: SEGUE_AUTH_TOKENS_FILE is not set; refusing to serve "
                "without authentication (set SEGUE_INSECURE_DEV=1 for local development only)")
        log.warning("authentication is OFF (SEGUE_INSECURE_DEV=1): every client may call "
                    "every RPC; never run like this on a shared network",
                    service=config.service)
        return Authenticator(None)
    return Authenticator(TokenFile(config.auth_tokens_file), open_health=config.open_health,
                         open_reflection=config.open_reflection)


def _register_standard(server: grpc.aio.Server, services: Sequence[str]) -> Any:
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    return health_servicer


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    address = f"{config.host}:{config.grpc_port}"
    credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
    port = (server.add_secure_port(address, credentials) if credentials is not None
            else server.add_insecure_port(address))
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return port


async def start_server(
    config: ServerConfig,
    register: Register,
    *,
    on_shutdown: Sequence[ShutdownHook] = (),
    on_stopped: Sequence[ShutdownHook] = (),
    serve_metrics_port: bool = True,
) -> RunningServer:
    """Builds and starts a server on config.host:config.grpc_port (0 picks a free port)."""
    interceptor = ServiceInterceptor(config.service, authenticator(config),
                                     ClientStreams(config.max_streams_per_client))
    server = grpc.aio.server(interceptors=[interceptor], options=grpc_options(config))
    services = list(register(server))
    health_servicer = _register_standard(server, services)
    for name in (*services, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = _bind(server, config)
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
        on_stopped=list(on_stopped),
    )


async def serve_forever(
    config: ServerConfig,
    register: Register,
    *,
    on_shutdown: Sequence[ShutdownHook] = (),
    on_stopped: Sequence[ShutdownHook] = (),
    extra_log: dict[str, Any] | None = None,
) -> None:
    """Runs a service until SIGTERM or SIGINT, then shuts down gracefully."""
    running = await start_server(config, register, on_shutdown=on_shutdown,
                                 on_stopped=on_stopped)
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

