"""Faults: an unreachable Qdrant server, and a matcher killed with SIGKILL mid-indexing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from matcher_fixtures import DIMS, free_port, make_song, metadata_for, running_matcher
from matcher_qdrant_standin import QdrantStandIn

from segue.v1 import matcher_pb2, matcher_pb2_grpc
from services.matcher.client_store import ClientStore
from services.matcher.library import SongLibrary

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_an_unreachable_qdrant_server_answers_unavailable_and_the_service_stays_up() -> None:
    # Nothing listens on these ports: every Qdrant call fails to connect.
    store = ClientStore.connect(
        f"http://127.0.0.1:{free_port()}", "segue", DIMS, timeout_s=1, grpc_port=free_port()
    )
    library = SongLibrary(store)
    song = make_song("a", np.random.default_rng(0))

    async def main() -> None:
        async with running_matcher(library) as (stub, server):
            for _ in range(2):  # the failure is not cached; each call retries the store
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.UpsertSong(matcher_pb2.UpsertSongRequest(analysis=song))
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.GetSong(matcher_pb2.GetSongRequest(song_id="a"))
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="")
            )
            await channel.close(None)
            assert health.status == health_pb2.HealthCheckResponse.SERVING

    asyncio.run(main())


def test_a_matcher_whose_qdrant_server_goes_down_and_comes_back_serves_again_at_once() -> None:
    # A stand-in Qdrant server (see matcher_qdrant_standin: no real one installs here).
    port = free_port()
    qdrant = QdrantStandIn(port)  # gRPC only: nothing answers on the URL's REST port
    store = ClientStore.connect(
        f"http://127.0.0.1:{free_port()}", "segue", DIMS, timeout_s=1, grpc_port=port
    )
    library = SongLibrary(store)
    rng = np.random.default_rng(1)
    source = make_song("from", rng)
    target = make_song("to", rng, first_entry=np.array(source.segments[-1].exit))

    async def next_song(stub: matcher_pb2_grpc.MatcherAsyncStub) -> str:
        response = await stub.NextSegment(
            matcher_pb2.NextSegmentRequest(
                position=matcher_pb2.SongPosition(song_id="from", song_end=True), k=1
            ),
            timeout=5,
        )
        return response.candidates[0].song_id

    async def unavailable(stub: matcher_pb2_grpc.MatcherAsyncStub) -> bool:
        try:
            await next_song(stub)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False  # Qdrant answered: the song is not stored yet
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e.details()
            return True
        return False

    async def back_within(stub: matcher_pb2_grpc.MatcherAsyncStub, seconds: float) -> None:
        """The first calls after Qdrant is back may meet a connection still being set up;
        within `seconds` they must succeed."""
        deadline = time.monotonic() + seconds
        while await unavailable(stub):
            assert time.monotonic() < deadline, f"still UNAVAILABLE {seconds} s after Qdrant"
            await asyncio.sleep(0.05)

    async def main() -> None:
        async with running_matcher(library) as (stub, _):
            assert await unavailable(stub)  # never reached yet: down from the start
            await asyncio.sleep(2)  # long enough for gRPC's default backoff to grow
            qdrant.start()
            await back_within(stub, 1.5)  # NextSegment from an unknown song: NOT_FOUND
            for song in (source, target):
                await stub.UpsertSong(matcher_pb2.UpsertSongRequest(analysis=song), timeout=5)
            assert await next_song(stub) == "to"
            qdrant.stop()
            for _ in range(10):  # down for a while, several failed calls
                assert await unavailable(stub)
                await asyncio.sleep(0.3)
            qdrant.start()
            await back_within(stub, 1.5)
            assert await next_song(stub) == "to"  # its data is there after the restart

    try:
        asyncio.run(main())
    finally:
        store.close()
        qdrant.close()


def _start_matcher(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SEGUE_QDRANT_PATH": str(data),
        "SEGUE_GRPC_HOST": "127.0.0.1",
        "SEGUE_GRPC_PORT": str(port),
        "SEGUE_METRICS_PORT": "0",
        "OMP_NUM_THREADS": "1",
        "SEGUE_INSECURE_DEV": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.matcher"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_ready(
    stub: matcher_pb2_grpc.MatcherAsyncStub, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            await stub.GetSong(matcher_pb2.GetSongRequest(song_id="probe"), timeout=2)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("matcher did not start")


def test_a_matcher_killed_mid_indexing_keeps_every_acknowledged_song_intact(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    songs = [make_song(f"s{i}", rng, segments=12) for i in range(400)]
    port = free_port()
    acknowledged: list[str] = []

    async def index_until_killed() -> None:
        proc = _start_matcher(tmp_path / "store", port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = matcher_pb2_grpc.MatcherStub(channel)
                await _wait_ready(stub, proc)

                async def writer(offset: int) -> None:
                    for i in range(offset, len(songs), 4):
                        request = matcher_pb2.UpsertSongRequest(
                            analysis=songs[i], metadata=metadata_for(i)
                        )
                        try:
                            await stub.UpsertSong(request, timeout=10)
                        except grpc.aio.AioRpcError:
                            return  # the server died under this call: not acknowledged
                        acknowledged.append(songs[i].song_id)
                        if len(acknowledged) == 60:
                            proc.send_signal(signal.SIGKILL)

                await asyncio.gather(*(writer(o) for o in range(4)))
        finally:
            proc.kill()
            proc.wait()

    async def check_after_restart() -> None:
        proc = _start_matcher(tmp_path / "store", port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = matcher_pb2_grpc.MatcherStub(channel)
                await _wait_ready(stub, proc)
                by_id = {s.song_id: s for s in songs}
                for song_id in acknowledged:
                    stored = await stub.GetSong(
                        matcher_pb2.GetSongRequest(song_id=song_id, with_vectors=True)
                    )
                    sent = by_id[song_id]
                    assert len(stored.segments) == len(sent.segments)
                    for got, want in zip(stored.segments, sent.segments, strict=True):
                        assert np.allclose(got.exit, want.exit, atol=1e-5)
                    assert stored.metadata.artist
                # Songs written but not acknowledged are whole or absent, never partial.
                for song in songs:
                    try:
                        stored = await stub.GetSong(
                            matcher_pb2.GetSongRequest(song_id=song.song_id, with_vectors=True)
                        )
                    except grpc.aio.AioRpcError as e:
                        assert e.code() == grpc.StatusCode.NOT_FOUND
                        continue
                    assert all(len(s.entry) == DIMS.transition for s in stored.segments)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    asyncio.run(index_until_killed())
    assert 60 <= len(acknowledged) < len(songs)
    asyncio.run(check_after_restart())
