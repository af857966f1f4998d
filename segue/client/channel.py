"""What every service client shares: one gRPC channel, limits, credentials, deadlines, and the
one place where gRPC errors become `segue.client.errors` exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import ClassVar, Self, TypeVar

import grpc
import grpc.aio

from segue.client.errors import SegueError, UnavailableError, from_rpc_error
from segue.client.security import ClientSecurity, open_channel
from segue.client.timeouts import (
    DEFAULT_POLICY,
    USE_CLIENT_TIMEOUT,
    CallTimeout,
    Timeout,
    check_timeout,
    unary_deadline,
)

# Matches the servers' default; larger messages are refused.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")


class ServiceClient:
    """Base of the async clients; use them as `async with Client(address) as client:`.

    `address` is any gRPC target: `host:port`, `dns:///name:port` (e.g. a headless Kubernetes
    Service, which resolves to every ready pod) or `ipv4:10.0.0.1:50051,10.0.0.2:50051`.
    Calls are spread round-robin over every address the target resolves to: an Analyze stream
    is long-lived, so balancing per connection (gRPC's default) would pin all of a client's
    songs to one replica.
    `token` is sent as a bearer token on every call and `credentials` enables TLS; both default
    to the environment (SEGUE_TOKEN or SEGUE_TOKEN_FILE, SEGUE_TLS_CA and friends: see
    `segue.client.security`). `timeout_s` sets the deadlines of this client's calls; every
    method also takes its own `timeout_s`. See `segue.client.timeouts` for the default policy
    and what numbers and None mean.
    """

    # The service's name in proto/segue/v1 ("Matcher"), named in errors.
    SERVICE: ClassVar[str] = ""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout_s: Timeout = DEFAULT_POLICY,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
    ) -> None:
        check_timeout(timeout_s)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.lb_policy_name", "round_robin"),
        ]
        self.address = address
        self.timeout_s: Timeout = timeout_s
        env = security or ClientSecurity.from_env()
        chosen = ClientSecurity(token=token or env.token, tls=credentials or env.tls,
                                server_name=env.server_name)
        self._channel = open_channel(address, chosen, options)
        self._bind(self._channel)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        """Creates the service's stub on `channel` (each client defines it)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Waits up to `timeout_s` seconds for the channel to connect (e.g. right after
        starting a server); raises UnavailableError if it does not."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            raise UnavailableError(
                grpc.StatusCode.UNAVAILABLE, f"not connected within {timeout_s:g} s",
                service=self.SERVICE, method="connect", address=self.address,
                timeout_s=timeout_s,
            ) from None

    async def _unary(
        self,
        method: str,
        call: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout_s: CallTimeout = USE_CLIENT_TIMEOUT,
    ) -> Resp:
        """Makes one unary call under the unary deadline; raises SegueError on failure."""
        deadline = unary_deadline(self.timeout_s, timeout_s)
        with self._errors(method, deadline):
            return await call(request, timeout=deadline)

    async def _responses(
        self, method: str, deadline: float | None, responses: AsyncIterable[T]
    ) -> AsyncIterator[T]:
        """A stream's responses, with its failures raised as SegueError."""
        try:
            with self._errors(method, deadline):
                async for response in responses:
                    yield response
        finally:
            if isinstance(responses, AsyncGenerator):
                await responses.aclose()  # runs its clean-up now, not when collected

    @contextmanager
    def _errors(self, method: str, deadline: float | None) -> Iterator[None]:
        """Raises a gRPC failure inside as the SegueError for its code, from the original."""
        try:
            yield
        except SegueError:
            raise
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, service=self.SERVICE, method=method, address=self.address,
                                 timeout_s=deadline) from e
