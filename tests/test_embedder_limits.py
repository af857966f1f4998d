"""Server limits and lifecycle: stream cap, song length, idle eviction, graceful draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import make_embedder_server

from segue.client.embedder import EmbedderClient, f32_mono_format

SECOND = np.zeros(22050, dtype=np.float32).tobytes()


async def _held_open(opened: asyncio.Event, release: asyncio.Event) -> AsyncIterator[bytes]:
    yield SECOND
    opened.set()
    await release.wait()


async def _status(coro: object) -> grpc.aio.AioRpcError:
    try:
        await coro  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the call succeeded")


def test_streams_beyond_the_concurrency_limit_are_refused_while_others_continue(
    stream_model_path: Path,
) -> None:
    server = make_embedder_server(stream_model_path, max_concurrent_streams=2)

    async def run() -> None:
        async with EmbedderClient(server.address) as client:
            release = asyncio.Event()
            opened = [asyncio.Event(), asyncio.Event()]
            held = [asyncio.ensure_future(client.analyze_pcm(
                f"held-{i}", f32_mono_format(22050), _held_open(opened[i], release)))
                for i in range(2)]
            await asyncio.gather(*(e.wait() for e in opened))
            while server.servicer is None or server.servicer.active_streams < 2:
                await asyncio.sleep(0.01)
            error = await _status(client.analyze_pcm("third", f32_mono_format(22050), [SECOND]))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 2 concurrent streams" in (error.details() or "")
            release.set()
            results = await asyncio.gather(*held)
            assert [r.analysis.duration_s for r in results] == [1.0, 1.0]

    try:
        asyncio.run(run())
    finally:
        server.stop()


def test_a_song_longer_than_the_maximum_is_refused(stream_model_path: Path) -> None:
    server = make_embedder_server(stream_model_path, max_song_s=3.0)

    async def run() -> grpc.aio.AioRpcError:
        async with EmbedderClient(server.address) as client:
            return await _status(client.analyze_pcm("long", f32_mono_format(22050),
                                                    [SECOND] * 4))

    try:
        error = asyncio.run(run())
    finally:
        server.stop()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum length of 3 s" in (error.details() or "")


def test_an_idle_stream_is_evicted_after_its_ttl(stream_model_path: Path) -> None:
    server = make_embedder_server(stream_model_path, stream_idle_ttl_s=0.3)

    async def run() -> grpc.aio.AioRpcError:
        async with EmbedderClient(server.address) as client:
            never = asyncio.Event()
            return await _status(client.analyze_pcm(
                "idle", f32_mono_format(22050), _held_open(asyncio.Event(), never)))

    try:
        error = asyncio.run(run())
    finally:
        server.stop()
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "idle" in (error.details() or "")


def test_a_draining_server_refuses_new_streams_but_finishes_open_ones(
    stream_model_path: Path,
) -> None:
    server = make_embedder_server(stream_model_path)

    async def run() -> None:
        async with EmbedderClient(server.address) as client:
            release, opened = asyncio.Event(), asyncio.Event()
            held = asyncio.ensure_future(client.analyze_pcm(
                "in-flight", f32_mono_format(22050), _held_open(opened, release)))
            await opened.wait()
            assert server.servicer is not None
            asyncio.run_coroutine_threadsafe(server.servicer.drain(), server._loop).result(5)
            error = await _status(client.analyze_pcm("new", f32_mono_format(22050), [SECOND]))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "resume the stream on another replica" in (error.details() or "")
            release.set()
            assert (await held).analysis.duration_s == pytest.approx(1.0)

    try:
        asyncio.run(run())
    finally:
        server.stop()
