"""Real servers on loopback for the SDK tests: a matcher, a gateway, and a port nobody serves."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from matcher_fixtures import edge_store
from thread_server import ThreadServer

from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register

# The Segue RPCs that stream requests and responses; every other one is unary.
STREAMING = frozenset({"Analyze", "RenderTransition", "RenderMashup", "RenderMix"})


def matcher_server(store_dir: Path) -> ThreadServer[MatcherServicer]:
    """A real matcher on an empty embedded store in `store_dir`, served from its own thread."""
    library = SongLibrary(edge_store(store_dir / "edge"))
    return ThreadServer("matcher", lambda: MatcherServicer(library), register, grace_s=1.0).start()


class Gateway:
    """What stands in front of a service (an auth proxy, a failing backend): answers every
    segue.v1 RPC with the status `code` and `details`; with `hang`, never answers; with
    `empty`, ends streams with OK and no message."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.INTERNAL
        self.details = "gateway says no"
        self.hang = False
        self.empty = False

    async def answer(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.hang:
            await asyncio.Event().wait()  # until the client's deadline cancels the call
        await context.abort(self.code, self.details)


class _GatewayHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic in stubs only
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def service(self, call: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = call.method  # "/segue.v1.Matcher/GetSong"
        if not method.startswith("/segue.v1."):
            return None
        name = method.rsplit("/", 1)[1]
        if name == "Analyze":
            return grpc.stream_stream_rpc_method_handler(self._analyze)
        if name in STREAMING:
            return grpc.stream_stream_rpc_method_handler(self._render)
        return grpc.unary_unary_rpc_method_handler(self._unary)

    # The handlers answer once the client has sent what it sends unprompted: an Analyze client
    # waits for the server after its config, a render client sends everything. A status sent
    # while a client still writes can reach it as INTERNAL instead (grpc/grpc#36066).

    async def _unary(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await self._gateway.answer(context)

    async def _analyze(self, requests: AsyncIterator[bytes],
                       context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        await anext(requests, None)
        async for message in self._end(context):
            yield message

    async def _render(self, requests: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        async for _ in requests:
            pass
        async for message in self._end(context):
            yield message

    async def _end(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        """Answers with the gateway's status, or (`empty`) ends with OK and no message; an
        async generator, as the server's metrics wrapper expects of stream handlers."""
        if not self._gateway.empty:
            await self._gateway.answer(context)
        nothing: tuple[bytes, ...] = ()
        for message in nothing:
            yield message


def gateway_server() -> ThreadServer[Gateway]:
    """A Gateway on a free loopback port (set its `code`, `details` or `hang` per test)."""

    def registrar(gateway: Gateway) -> Any:
        def add(server: grpc.aio.Server) -> list[str]:
            server.add_generic_rpc_handlers((_GatewayHandler(gateway),))
            return []

        return add

    return ThreadServer("gateway", Gateway, registrar, grace_s=0.5).start()


def closed_port_address() -> str:
    """A loopback address where nothing listens (its port was just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"
