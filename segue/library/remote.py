"""Files analysed by running embedder replicas, several streams in flight per replica.

Each replica gets `streams_per_replica` concurrent Analyze streams; a file goes to the replica
with the fewest streams in flight, so all stay busy and a slow one is not handed more. The
audio is decoded here, streamed from ffmpeg chunk by chunk (never a whole song in memory), and
the gRPC work runs on an event loop in a background thread so callers iterate plainly.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterable, Iterator

from segue.audio import DecodeError, PcmReader
from segue.client.embedder import EmbedderClient, f32_mono_format
from segue.client.errors import SegueError, UnavailableError
from segue.library import outcome as why
from segue.library.av_reader import AvReader
from segue.library.decoding import DECODE_RATE_HZ, check_file, decode_failure, open_reader
from segue.library.outcome import Done, Failed, Outcome
from segue.library.sources import Source

# Concurrent streams per replica: enough that one stream's decode and network waits are
# covered by the others, so the replica's batcher always has windows queued.
DEFAULT_STREAMS_PER_REPLICA = 4
# Audio per streamed message, seconds: each message costs both ends a fixed gRPC overhead.
# 4 s instead of 1 s, with no checkpoints, took the replica from 6.6 to 5.0 CPU seconds per
# audio hour (bench/results/library_2026-12-07-amd.md). Capped by each replica's chunk limit.
DEFAULT_CHUNK_S = 4.0
# A library run re-analyses a failed file from its start and keeps no checkpoint, while each
# checkpoint seals the stream's whole state: ask for none (longer than any song allowed).
NO_CHECKPOINTS_S = 1e9
_END = object()


class _Replicas:
    """Clients of every replica, how many streams each has in flight, and its chunk limit."""

    def __init__(self, addresses: list[str]) -> None:
        self.clients = [EmbedderClient(a) for a in addresses]
        self.in_flight = [0] * len(addresses)
        # None: not asked yet; 0: the replica states no limit.
        self._max_chunk_bytes: list[int | None] = [None] * len(addresses)
        self._asking = [asyncio.Lock() for _ in addresses]

    def least_busy(self) -> int:
        return min(range(len(self.clients)), key=self.in_flight.__getitem__)

    async def chunk_frames(self, index: int, chunk_s: float) -> int:
        """Mono float32 frames per message to replica `index`: chunk_s seconds, within the
        limit its ModelInfo states (asked once per replica; SegueError when it cannot say)."""
        async with self._asking[index]:
            if self._max_chunk_bytes[index] is None:
                info = await self.clients[index].model_info()
                self._max_chunk_bytes[index] = int(info.max_chunk_bytes)
        limit = self._max_chunk_bytes[index]
        frames = max(1, round(chunk_s * DECODE_RATE_HZ))
        return max(1, min(frames, limit // 4)) if limit else frames

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def describe_failure(error: SegueError) -> str:
    """One line: the service, its address, the RPC, the status and its details."""
    return (
        f"{error.service.lower()} at {error.address}: {error.method} failed: "
        f"{error.code().name.lower()}: {error.details() or '(no details)'}"
    )


async def _pcm(reader: PcmReader | AvReader, frames: int) -> AsyncIterator[bytes]:
    """The reader's chunks as f32le bytes, read off the event loop."""
    chunks = reader.chunks(frames)
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk.astype("<f4", copy=False).tobytes()


async def _analyze_one(replicas: _Replicas, source: Source, chunk_s: float) -> Outcome:
    info, failed = check_file(source)
    if failed is not None or info is None:
        return failed or Failed(source, why.UNREADABLE, "no file status")
    index = replicas.least_busy()
    replicas.in_flight[index] += 1
    try:
        frames = await replicas.chunk_frames(index, chunk_s)
        with open_reader(source.path, check_length=True) as reader:
            result = await replicas.clients[index].analyze_pcm(
                source.song_id, f32_mono_format(DECODE_RATE_HZ), _pcm(reader, frames),
                stream_windows=False, checkpoint_interval_s=NO_CHECKPOINTS_S,
            )  # fmt: skip
    except DecodeError as e:
        return decode_failure(source, e)
    except SegueError as e:
        return Failed(
            source, why.ANALYSIS, describe_failure(e), service_down=isinstance(e, UnavailableError)
        )
    finally:
        replicas.in_flight[index] -= 1
    analysis = result.analysis
    return Done(source, analysis.SerializeToString(), analysis.duration_s,
                info.st_size, info.st_mtime_ns)  # fmt: skip


async def _run(
    sources: list[Source],
    addresses: list[str],
    streams: int,
    chunk_s: float,
    out: queue.Queue[object],
    stop: threading.Event,
) -> None:
    replicas = _Replicas(addresses)
    limit = asyncio.Semaphore(streams * len(addresses))

    async def one(source: Source) -> None:
        async with limit:
            if not stop.is_set():
                out.put(await _analyze_one(replicas, source, chunk_s))

    try:
        await asyncio.gather(*(one(s) for s in sources))
    finally:
        await replicas.close()


def analyze_remote(
    sources: Iterable[Source],
    addresses: list[str],
    *,
    streams_per_replica: int = DEFAULT_STREAMS_PER_REPLICA,
    chunk_s: float = DEFAULT_CHUNK_S,
) -> Iterator[Outcome]:
    """Analyses every source on the replicas; yields each outcome as its file finishes.

    Closing the iterator early stops starting new files (streams in flight finish).
    """
    if not addresses:
        raise ValueError("no embedder address given")
    out: queue.Queue[object] = queue.Queue()
    stop = threading.Event()
    listed = list(sources)

    def main() -> None:
        try:
            asyncio.run(_run(listed, addresses, streams_per_replica, chunk_s, out, stop))
        except BaseException as e:  # handed to the caller's thread
            out.put(e)
        finally:
            out.put(_END)

    thread = threading.Thread(target=main, name="segue-library-remote", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Done | Failed)
            yield item
    finally:
        stop.set()
        thread.join()


__all__ = ["DEFAULT_CHUNK_S", "DEFAULT_STREAMS_PER_REPLICA", "NO_CHECKPOINTS_S", "analyze_remote"]
