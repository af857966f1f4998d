"""A real gRPC service served by its own event loop in a daemon thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Self, TypeVar

from segue.config import ServerConfig
from segue.server import Register, RunningServer, ShutdownHook, start_server

S = TypeVar("S")


class ThreadServer(Generic[S]):
    """Starts `factory()`'s servicer on a free loopback port; `stop()` shuts it down gracefully.

    `on_shutdown` hooks run when the server stops taking calls (e.g. draining streams);
    `close` runs after the server has stopped.
    """

    def __init__(
        self,
        service: str,
        factory: Callable[[], S],
        registrar: Callable[[S], Register],
        *,
        on_shutdown: Callable[[S], Sequence[ShutdownHook]] = lambda _: (),
        close: Callable[[S], Awaitable[None]] | None = None,
        grace_s: float = 5.0,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._service = service
        self._factory = factory
        self._registrar = registrar
        self._on_shutdown = on_shutdown
        self._close = close
        self._config = ServerConfig(
            insecure_dev=True, service=service, host="127.0.0.1", grpc_port=0,
                                    shutdown_grace_s=grace_s,
                                    max_message_bytes=max_message_bytes)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0
        self.servicer: S | None = None
        self.running: RunningServer | None = None
        self._error: BaseException | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        if self._error is None:
            self._loop.run_forever()

    async def _start(self) -> None:
        try:
            servicer = self._factory()
            self.servicer = servicer
            self.running = await start_server(
                self._config, self._registrar(servicer),
                on_shutdown=self._on_shutdown(servicer), serve_metrics_port=False,
            )
            self.port = self.running.port
        except BaseException as e:  # surfaced in start()
            self._error = e

    def start(self) -> Self:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self.running is not None and self.servicer is not None
            await self.running.stop()
            if self._close is not None:
                await self._close(self.servicer)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
