"""What every service client shares: one gRPC channel, limits, credentials, lifetime."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpc

# Matches the servers' default; larger messages are refused.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ServiceClient:
    """Base of the async clients; use them as `async with Client(address) as client:`.

    `address` is any gRPC target: `host:port`, `dns:///name:port` (e.g. a headless Kubernetes
    Service, which resolves to every ready pod) or `ipv4:10.0.0.1:50051,10.0.0.2:50051`.
    Calls are spread round-robin over every address the target resolves to: an Analyze stream
    is long-lived, so balancing per connection (gRPC's default) would pin all of a client's
    songs to one replica.
    `credentials` enables TLS; `timeout_s` is the deadline of each call (None: no deadline).
    """

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.lb_policy_name", "round_robin"),
        ]
        self.address = address
        self.timeout_s = timeout_s
        self._channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)
