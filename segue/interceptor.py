"""The one server interceptor every Segue service runs: who may call, what gets measured, and
what a client is told when something goes wrong.

For each call, in order:
1. metrics: latency, in-flight count and final status code of every segue.v1 RPC;
2. authentication and authorisation (segue.security.auth), decided from metadata before any
   request is read: UNAUTHENTICATED or PERMISSION_DENIED, counted by reason;
3. a per-client cap on open streaming calls: RESOURCE_EXHAUSTED beyond it;
4. requests that are not valid protobuf bytes: INVALID_ARGUMENT, in one place for all services
   (gRPC itself would answer UNKNOWN or INTERNAL and log a traceback);
5. an exception escaping a handler: INTERNAL carrying an error id that the log line also
   carries, never the exception's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from segue.log import get_logger
from segue.metrics import AUTH_REFUSALS, RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS
from segue.security.auth import ANONYMOUS, Authenticator, Refusal
from segue.security.tokens import Principal

log = get_logger("segue.server")
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can refuse it."""

    type_name: str
    size: int


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that returns Undecodable instead of raising."""
    if deserializer is None:
        return None
    type_name = getattr(getattr(deserializer, "__self__", None), "__name__", "request")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return Undecodable(type_name, len(data))

    return deserialize


async def _refuse_undecodable(request: Undecodable, context: Context) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"request is not a valid {request.type_name} message "
                        f"({request.size} bytes)")


async def _checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await _refuse_undecodable(request, context)
        yield request


def _code_name(context: Context) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class ClientStreams:
    """Counts each client's open streaming calls against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def try_open(self, client: str) -> bool:
        if self._open.get(client, 0) >= self.limit:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def close(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


def _peer_host(context: Context) -> str:
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every handler of a service; see the module docstring for what it does."""

    def __init__(self, service: str, auth: Authenticator, streams: ClientStreams) -> None:
        self._service = service
        self._auth = auth
        self._streams = streams

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(details)
        if handler is None:
            return None  # gRPC answers UNIMPLEMENTED
        decision = self._auth.check(details.method, details.invocation_metadata)
        return _rewrap(handler, lambda context: self._guard(context, details.method, decision,
                                                           handler))

    @contextlib.asynccontextmanager
    async def _guard(self, context: Context, path: str, decision: Principal | Refusal,
                     handler: Any) -> AsyncIterator[None]:
        method = path.rsplit("/", 1)[-1]
        observed = path.startswith("/segue.")
        async with self._measured(context, method, observed):
            if isinstance(decision, Refusal):
                AUTH_REFUSALS.labels(self._service, decision.reason).inc()
                log.debug("call refused", method=method, reason=decision.reason,
                          peer=context.peer())
                await context.abort(decision.code, decision.message)
            streaming = handler.request_streaming or handler.response_streaming
            async with self._stream_slot(context, decision, streaming):
                yield

    @contextlib.asynccontextmanager
    async def _stream_slot(self, context: Context, principal: Principal | Refusal,
                           streaming: bool) -> AsyncIterator[None]:
        if not streaming:
            yield
            return
        client = (_peer_host(context) if principal is ANONYMOUS or not self._auth.enabled
                  else getattr(principal, "name", "unknown"))
        if not self._streams.try_open(client):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this client already holds {self._streams.limit} open streams "
                                "(SEGUE_MAX_STREAMS_PER_CLIENT)")
        try:
            yield
        finally:
            self._streams.close(client)

    @contextlib.asynccontextmanager
    async def _measured(self, context: Context, method: str,
                        observed: bool) -> AsyncIterator[None]:
        if observed:
            RPC_IN_FLIGHT.labels(self._service, method).inc()
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
        except Exception:
            code = "INTERNAL"
            error_id = uuid.uuid4().hex[:16]
            log.exception("unhandled error", service=self._service, method=method,
                          error_id=error_id)
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"internal error (error id {error_id}; see the server log)")
        finally:
            if observed:
                RPC_IN_FLIGHT.labels(self._service, method).dec()
                RPC_DURATION.labels(self._service, method).observe(time.perf_counter() - started)
                RPC_REQUESTS.labels(self._service, method, code).inc()


Guard = Callable[[Context], contextlib.AbstractAsyncContextManager[None]]


def _rewrap(handler: Any, guard: Guard) -> Any:
    """The same kind of handler, running under `guard` with undecodable requests refused."""
    wrap = _streaming if handler.response_streaming else _unary
    wrapped = wrap(handler, guard)
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return factory(wrapped, request_deserializer=tolerant(handler.request_deserializer),
                   response_serializer=handler.response_serializer)


async def _request_or_refusal(request: Any, context: Context, streaming: bool) -> Any:
    if streaming:
        return _checked(request, context)
    if isinstance(request, Undecodable):
        await _refuse_undecodable(request, context)
    return request


def _streaming(handler: Any, guard: Guard) -> Any:
    behavior: Any = handler.stream_stream if handler.request_streaming else handler.unary_stream

    async def streaming(request: Any, context: Context) -> Any:
        async with guard(context):
            checked = await _request_or_refusal(request, context, handler.request_streaming)
            async for response in behavior(checked, context):
                yield response

    return streaming


def _unary(handler: Any, guard: Guard) -> Any:
    behavior: Any = handler.stream_unary if handler.request_streaming else handler.unary_unary

    async def unary(request: Any, context: Context) -> Any:
        async with guard(context):
            checked = await _request_or_refusal(request, context, handler.request_streaming)
            return await behavior(checked, context)

    return unary
