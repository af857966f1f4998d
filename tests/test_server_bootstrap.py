"""The shared server bootstrap: health, reflection, metrics by status code, error ids, graceful
stop in drain-then-close order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from segue.config import ServerConfig
from segue.server import RunningServer, start_server

SERVICE = "segue.test.Probe"


async def _ok(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


async def _boom(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError("kaboom")


async def _reject(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad probe")
    raise AssertionError("unreachable")


SLOW_CALLS_FINISHED: list[bytes] = []


async def _slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await asyncio.sleep(0.5)
    SLOW_CALLS_FINISHED.append(request)
    return request


def _register(server: grpc.aio.Server) -> Sequence[str]:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in (("Ok", _ok), ("Boom", _boom), ("Reject", _reject), ("Slow", _slow))
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    return [SERVICE]


def _count(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "segue_rpc_requests_total", {"service": "probe", "method": method, "code": code}
    )
    return value or 0.0


async def _start() -> RunningServer:
    config = ServerConfig(
        insecure_dev=True, service="probe", host="127.0.0.1", grpc_port=0, shutdown_grace_s=2)
    return await start_server(config, _register, serve_metrics_port=False)


async def _call(port: int, method: str) -> bytes:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        fn = channel.unary_unary(f"/{SERVICE}/{method}", None, None)
        result: bytes = await fn(b"ping", timeout=5)
        return result


def test_health_reports_serving_for_each_service_and_overall() -> None:
    async def scenario() -> None:
        running = await _start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for name in ("", SERVICE):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await running.stop(0)

    asyncio.run(scenario())


def test_metrics_count_rpcs_by_status_code_and_escaped_errors_become_internal() -> None:
    async def scenario() -> None:
        running = await _start()
        codes = (("Ok", "OK"), ("Boom", "INTERNAL"), ("Reject", "INVALID_ARGUMENT"))
        before = [_count(method, code) for method, code in codes]
        try:
            assert await _call(running.port, "Ok") == b"ping"
            with structlog.testing.capture_logs() as logs, \
                    pytest.raises(grpc.aio.AioRpcError) as boom:
                await _call(running.port, "Boom")
            assert boom.value.code() == grpc.StatusCode.INTERNAL
            details = boom.value.details() or ""
            assert "kaboom" not in details  # exception text stays in the server's log
            [logged] = [entry for entry in logs if entry.get("error_id")]
            assert f"error id {logged['error_id']}" in details
            with pytest.raises(grpc.aio.AioRpcError) as rejected:
                await _call(running.port, "Reject")
            assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert rejected.value.details() == "bad probe"
        finally:
            await running.stop(0)
        after = [_count(method, code) for method, code in codes]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]

    asyncio.run(scenario())


def test_graceful_stop_finishes_in_flight_calls_before_closing_stores() -> None:
    async def scenario() -> None:
        running = await _start()
        events: list[str] = []
        SLOW_CALLS_FINISHED.clear()

        async def close_store() -> None:
            events.append("closed" if SLOW_CALLS_FINISHED else "closed with a call in flight")

        running.on_stopped.append(close_store)
        in_flight = asyncio.create_task(_call(running.port, "Slow"))
        await asyncio.sleep(0.1)
        await running.stop(grace_s=2)
        assert await in_flight == b"ping"
        assert events == ["closed"]
        status = await running.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), None)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING

    asyncio.run(scenario())
