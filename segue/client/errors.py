"""Errors raised by the Segue clients: one class per gRPC status code the services send.

Every client method raises `SegueError` subclasses only (and `ValueError` for arguments it can
check before calling); the `grpc.aio.AioRpcError` that gRPC raised is kept as `__cause__`.

Example::

    from segue.client import MatcherClient, NotFoundError

    async with MatcherClient("127.0.0.1:50052") as matcher:
        try:
            await matcher.get_song("no-such-song")
        except NotFoundError as e:
            print(e.code().name, e.service, e.method)

which prints ``NOT_FOUND Matcher GetSong``.

`SegueError` is itself a `grpc.aio.AioRpcError`, so code written against raw gRPC errors
(`except grpc.aio.AioRpcError`, `e.code()`, `e.details()`) keeps working.

=====================  =========================  =====================================
status code            exception                  sent when (see proto/segue/v1/*.proto)
=====================  =========================  =====================================
INVALID_ARGUMENT       InvalidArgumentError       a bad request; the message names the field
NOT_FOUND              NotFoundError              a song id the matcher does not store
FAILED_PRECONDITION    FailedPreconditionError    stream messages out of order, empty stream
RESOURCE_EXHAUSTED     ResourceExhaustedError     stream or size limits, an overloaded server
UNAVAILABLE            UnavailableError           no connection, shutdown, matcher store down
DEADLINE_EXCEEDED      DeadlineExceededError      the call's deadline, or an idle stream evicted
UNAUTHENTICATED        UnauthenticatedError       a proxy or TLS setup refused the caller
PERMISSION_DENIED      PermissionDeniedError      a proxy refused the caller
CANCELLED              CallCancelledError         the call was cancelled by the other side
UNIMPLEMENTED          UnimplementedError         the server lacks this RPC (older version)
INTERNAL               InternalError              a server fault (Analyze: resume from a token)
others                 SegueError                 codes no Segue service sends
=====================  =========================  =====================================
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio


class SegueError(grpc.aio.AioRpcError):
    """A failed call to a Segue service.

    `code()` and `details()` are the gRPC status and its message; `service` is the service's
    short name ("Matcher"), `method` the RPC ("GetSong"), `address` the target the client was
    made with, and `timeout_s` the deadline the call ran under in seconds (None: none).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        service: str,
        method: str,
        address: str,
        timeout_s: float | None = None,
        initial_metadata: Any = None,
        trailing_metadata: Any = None,
        debug_error_string: str | None = None,
    ) -> None:
        super().__init__(code, initial_metadata, trailing_metadata, details, debug_error_string)
        self.service = service
        self.method = method
        self.address = address
        self.timeout_s = timeout_s

    @property
    def rpc(self) -> str:
        """The full gRPC method name, e.g. "/segue.v1.Matcher/GetSong"."""
        return f"/segue.v1.{self.service}/{self.method}"

    def __str__(self) -> str:
        details = self.details() or "(no details)"
        text = f"{self.service}.{self.method} at {self.address}: {self.code().name.lower()}: "
        if self.code() == grpc.StatusCode.DEADLINE_EXCEEDED and self.timeout_s is not None:
            details += f" (deadline {self.timeout_s:g} s)"
        return text + details

    def __reduce__(self) -> tuple[Any, ...]:
        # AioRpcError pickles by its own positional arguments, which this class does not take.
        return (_rebuild, (type(self), self.code(), self.details() or "", self.service,
                           self.method, self.address, self.timeout_s))


class InvalidArgumentError(SegueError):
    """INVALID_ARGUMENT: the request is malformed; `details()` names the bad field or input."""


class NotFoundError(SegueError):
    """NOT_FOUND: a song id that the matcher does not store."""


class FailedPreconditionError(SegueError):
    """FAILED_PRECONDITION: stream messages out of order (no config first, a chunk after the
    end) or a stream that ended with no audio."""


class ResourceExhaustedError(SegueError):
    """RESOURCE_EXHAUSTED: a limit (concurrent streams, song length, excerpt size) or an
    overloaded server; retry later or send less."""


class UnavailableError(SegueError):
    """UNAVAILABLE: the service cannot be reached, is shutting down, or (matcher) its store is
    down; retry with backoff (Analyze: resume on another replica from the last checkpoint)."""


class DeadlineExceededError(SegueError):
    """DEADLINE_EXCEEDED: the call outlived its deadline (`timeout_s`), or the embedder
    evicted a stream that sent nothing for too long."""


class UnauthenticatedError(SegueError):
    """UNAUTHENTICATED: something in front of the service (proxy, TLS) refused the caller."""


class PermissionDeniedError(SegueError):
    """PERMISSION_DENIED: the caller is known but not allowed this call."""


class CallCancelledError(SegueError):
    """CANCELLED: the call was cancelled, e.g. by the server while it shut down.

    Not `asyncio.CancelledError`: cancelling the caller's own task raises that one, unchanged.
    """


class UnimplementedError(SegueError):
    """UNIMPLEMENTED: the server does not serve this RPC (an older version, or another service
    at this address)."""


class InternalError(SegueError):
    """INTERNAL: a fault in the server, or a reply that breaks the protocol.

    grpc-python also reports "Internal error from Core" here when a server ends a stream
    while the client is still sending (e.g. a render refused mid-upload), in place of the
    server's own status (grpc/grpc#36066).
    """


ERRORS: dict[grpc.StatusCode, type[SegueError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def error_class(code: grpc.StatusCode) -> type[SegueError]:
    """The exception class raised for a status code (SegueError for codes without one)."""
    return ERRORS.get(code, SegueError)


def from_rpc_error(
    error: grpc.aio.AioRpcError, *, service: str, method: str, address: str,
    timeout_s: float | None,
) -> SegueError:
    """The typed error for a raw gRPC error; the caller raises it `from error`."""
    return error_class(error.code())(
        error.code(), error.details() or "", service=service, method=method, address=address,
        timeout_s=timeout_s, initial_metadata=error.initial_metadata(),
        trailing_metadata=error.trailing_metadata(),
        debug_error_string=error.debug_error_string(),
    )


def _rebuild(cls: type[SegueError], code: grpc.StatusCode, details: str, service: str,
             method: str, address: str, timeout_s: float | None) -> SegueError:
    return cls(code, details, service=service, method=method, address=address,
               timeout_s=timeout_s)


__all__ = [
    "ERRORS",
    "CallCancelledError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SegueError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "error_class",
    "from_rpc_error",
]
