"""Embedder benchmark: per-chunk latency and aggregate speed at 1-64 concurrent streams.

R embedder servers (`python -m services.embedder`, started by devkit.localstack) serve N
concurrent SDK clients (`segue.client.EmbedderClient`, in this process, on the same cores);
each stream plays `--seconds` of music (default 120 s, about a song) in 1 s chunks. One server
is GIL-bound near one core, so the service scales out by replicas: for each R in `--replicas`
(default 1 and one per core) the clients target all R at once, `ipv4:127.0.0.1:p1,...`, which
the SDK's `round_robin` spreads calls over, as over the Kubernetes headless Service.

- Closed loop (the throughput test): each stream sends a chunk, waits for its window, sends
  the next; by Little's law mean latency = streams / throughput.
- Paced (the latency test): 32 streams together offer a fixed rate (1000x real time = one
  chunk per stream every 32 ms, phases spread); latency is measured at that load.

For context, in the same run: where the server's time goes per window (timed in-process), the
transport floor (a gRPC echo server, same message sizes), ffmpeg's decode speed and the peer
model (MECOMP's ONNX embedder, ../shared/peers) beside ours, model only.

    nice .venv/bin/python bench/bench_embedder.py [--replicas 1 2] [--streams 1 8 32 64]
        [--seconds 120] [--repeats 3] [--paced 32 500 1000] [--gpu] [--baseline OLD.json]

`--gpu` serves one replica on CUDA and adds 256 and 1024 streams. Writes
bench/results/embedder_<date>.md and .json (medians over the repeats; `--out` elsewhere).
"""

from __future__ import annotations

import os

# Before numpy loads: the same single-threaded BLAS as the server's (see services/embedder).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from bench.bench_model_speed import feeds, session  # noqa: E402
from devkit.localstack import Replica, Stack, free_port, running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.client import EmbedderClient  # noqa: E402
from segue.client.embedder import chunk_audio, f32_mono_format  # noqa: E402
from segue.music import find_music  # noqa: E402
from segue.v1 import embedder_pb2  # noqa: E402

FloatArray = npt.NDArray[np.float32]
RATE = 22050
FORMAT = f32_mono_format(RATE)
SHARED = REPO.parent / "shared"
PEER = SHARED / "peers" / "mecomp_audio_embedding_model.onnx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_ENV = {"SEGUE_LOG_LEVEL": "warning", "SEGUE_MAX_SONG_S": "36000",
              "SEGUE_MAX_CONCURRENT_STREAMS": "2048"}
# An AnalyzeResponse with one window of 64 + 64 + 64 floats is about this size.
ECHO_REPLY_BYTES = 800
# The targets: p99 per 1 s chunk at 32 streams, and aggregate speed.
TARGET_STREAMS = 32
TARGET_P99_MS = 10.0
TARGET_X_REALTIME = 1000.0
GPU_STREAMS = (256, 1024)
Schedule = Callable[[int], float] | None  # chunk index -> when to send it (perf_counter s)


# ---- audio --------------------------------------------------------------------------------


def music_files() -> list[Path]:
    """librosa's example songs beside the checkout, else 8 bundled tracks."""
    shared = SHARED / "music" / "librosa"
    return find_music(shared) if shared.is_dir() else find_music()[:8]


def stream_audio(songs: list[FloatArray], first: int, seconds: int) -> FloatArray:
    """The songs one after another from `songs[first % n]`, cycling, cut to `seconds`."""
    if not any(song.size for song in songs):
        raise ValueError("no audio in the music files")
    parts, total, k = [], 0, first
    while total < seconds * RATE:
        parts.append(songs[k % len(songs)])
        total += parts[-1].size
        k += 1
    return np.concatenate(parts)[: seconds * RATE]


def song_chunks(songs: list[FloatArray], streams: int, seconds: int) -> list[list[bytes]]:
    """Every stream's 1 s PCM chunks; stream i's audio is `stream_audio(songs, i, seconds)`."""
    # Streams with the same first song share one list: 1024 streams of 2 minutes would
    # otherwise hold 10 GB of PCM.
    by_first = {first: chunk_audio(stream_audio(songs, first, seconds), RATE, 1.0)
                for first in range(min(streams, len(songs)))}
    return [by_first[i % len(songs)] for i in range(streams)]


# ---- servers ------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_s() -> float:
    """User + system CPU seconds this process (the clients) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


SCRAPED = ("segue_embedder_batch_size_sum", "segue_embedder_batch_size_count",
           "segue_embedder_queue_delay_seconds_sum", "segue_embedder_queue_delay_seconds_count",
           "segue_embedder_audio_seconds_total")


def scrape(metrics: str) -> dict[str, float]:
    """Sums and counts of one embedder's batch histograms, and the audio it analysed (s)."""
    text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    samples = (line.partition(" ") for line in text.splitlines())
    return {name: float(value) for name, _, value in samples if name in SCRAPED}


@dataclass
class Snapshot:
    """The servers' and this process's counters at one moment."""

    metrics: list[dict[str, float]]
    server_cpu_s: float
    client_cpu_s: float
    at: float  # perf_counter seconds

    @staticmethod
    def take(replicas: list[Replica]) -> Snapshot:
        return Snapshot([scrape(r.metrics) for r in replicas],
                        sum(process_cpu_s(r.pid) for r in replicas), own_cpu_s(),
                        time.perf_counter())

    def grown(self, later: Snapshot, name: str) -> list[float]:
        """Per replica, how much the metric `name` grew since this snapshot."""
        return [a.get(name, 0.0) - b.get(name, 0.0)
                for b, a in zip(self.metrics, later.metrics, strict=True)]


# ---- clients ------------------------------------------------------------------------------


async def one_stream(client: EmbedderClient, song_id: str, chunks: list[bytes],
                     latencies: list[float], schedule: Schedule = None) -> float:
    """Streams `chunks` (1 s each) through the SDK, each sent once the previous chunk's window
    is back and, when paced, not before its scheduled time; appends each chunk's latency (s)
    and returns the seconds of audio sent."""
    window_back = asyncio.Event()
    received = [0.0]

    def on_response(response: embedder_pb2.AnalyzeResponse) -> None:
        if response.WhichOneof("kind") == "windows" and not window_back.is_set():
            received[0] = time.perf_counter()
            window_back.set()

    async def closed_loop() -> AsyncIterator[bytes]:
        for k, pcm in enumerate(chunks):
            if schedule is not None:
                await asyncio.sleep(max(0.0, schedule(k) - time.perf_counter()))
            window_back.clear()
            sent = time.perf_counter()
            yield pcm
            await window_back.wait()
            latencies.append(received[0] - sent)

    await client.analyze_pcm(song_id, FORMAT, closed_loop(), checkpoint_interval_s=5.0,
                             on_response=on_response)
    return float(len(chunks))


def paced_schedule(streams: int, paced_x: float | None, started: float
                   ) -> Callable[[int], Schedule]:
    """Stream i's send times when `streams` streams together offer `paced_x` x real time
    (phases spread evenly); None for each stream in a closed loop."""
    if paced_x is None:
        return lambda i: None
    period = streams / paced_x  # each stream's chunk interval, seconds

    def for_stream(i: int) -> Schedule:
        first = started + period * i / streams
        return lambda k: first + k * period

    return for_stream


def summary(latencies: list[float], audio_s: float, wall_s: float) -> dict[str, float]:
    """Count, audio, wall time, p50/p99 latency (ms) and x real time of one run."""
    lat_ms = np.asarray(latencies) * 1000
    return {"chunks": len(latencies), "audio_s": audio_s, "wall_s": wall_s,
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)), "x_realtime": audio_s / wall_s}


async def run_level(stack: Stack, streams: int, songs: list[FloatArray], seconds: int, *,
                    paced_x: float | None = None) -> dict[str, Any]:
    """One closed-loop (or, with paced_x, paced) run of `streams` concurrent songs."""
    replicas = stack.replicas["embedder"]
    # A few channels, like a few client processes, rather than one HTTP/2 connection.
    clients = [EmbedderClient(stack.target("embedder")) for _ in range(min(4, streams))]
    try:
        chunks = song_chunks(songs, streams, seconds)
        warm = song_chunks(songs, 1, 3)[0]
        # The first round opens the channels (each at whichever replica is ready first); the
        # second, one call per replica on each channel, reaches every replica.
        await asyncio.gather(*(one_stream(c, "warm", warm, []) for c in clients))
        await asyncio.gather(*(one_stream(c, "warm", warm, [])
                               for c in clients for _ in replicas))
        latencies: list[float] = []
        load = os.getloadavg()[0]
        before = Snapshot.take(replicas)
        schedule = paced_schedule(streams, paced_x, before.at)
        audio_s = await asyncio.gather(*(
            one_stream(clients[i % len(clients)], f"s{i}", c, latencies, schedule(i))
            for i, c in enumerate(chunks)))
        after = Snapshot.take(replicas)
    finally:
        for c in clients:
            await c.close()
    result: dict[str, Any] = {"replicas": len(replicas), "streams": streams,
                              **summary(latencies, sum(audio_s), after.at - before.at),
                              "load_avg_1m": load}
    return {**result, **server_figures(before, after, len(latencies)),
            **({} if paced_x is None else {"offered_x_realtime": paced_x})}


def server_figures(before: Snapshot, after: Snapshot, windows: int) -> dict[str, Any]:
    """CPU per window (ms), mean batch, mean queue delay (ms) and each replica's audio share."""
    runs = sum(before.grown(after, "segue_embedder_batch_size_count"))
    batched = sum(before.grown(after, "segue_embedder_batch_size_sum"))
    waits = sum(before.grown(after, "segue_embedder_queue_delay_seconds_sum"))
    waited = sum(before.grown(after, "segue_embedder_queue_delay_seconds_count"))
    served = before.grown(after, "segue_embedder_audio_seconds_total")
    return {
        "server_cpu_ms_per_window": 1000 * (after.server_cpu_s - before.server_cpu_s) / windows,
        "client_cpu_ms_per_window": 1000 * (after.client_cpu_s - before.client_cpu_s) / windows,
        "mean_batch_windows": batched / runs if runs else 0.0,
        "mean_queue_delay_ms": 1000 * waits / waited if waited else 0.0,
        # What round_robin made of it.
        "replica_audio_share": [a / sum(served) if sum(served) else 0.0 for a in served],
    }


# ---- the transport floor: a gRPC echo server (no SDK: it is not the embedder) ------------

ECHO_METHOD = "/bench.Echo/Echo"


def _identity(data: bytes) -> bytes:
    return data


async def serve_echo(port: int) -> None:
    """A bidi stream that answers each message with its first ECHO_REPLY_BYTES bytes."""

    async def echo(requests: Any, context: Any) -> Any:
        async for message in requests:
            yield message[:ECHO_REPLY_BYTES]

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Echo": grpc.stream_stream_rpc_method_handler(echo, _identity, _identity)})
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def echo_stream(stub: Any, chunks: list[bytes], latencies: list[float]) -> float:
    """Sends each chunk once the previous echo is back; returns the messages sent."""
    call = stub()
    for pcm in chunks:
        sent = time.perf_counter()
        await call.write(pcm)
        await call.read()
        latencies.append(time.perf_counter() - sent)
    await call.done_writing()
    return float(len(chunks))


async def run_echo_level(address: str, streams: int, messages: int, server_pid: int
                         ) -> dict[str, Any]:
    """`streams` closed-loop streams of `messages` one-second chunks each, echoed."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(min(4, streams))]
    stubs = [c.stream_stream(ECHO_METHOD, request_serializer=_identity,
                             response_deserializer=_identity) for c in channels]
    payload = chunk_audio(np.zeros(RATE, np.float32), RATE, 1.0)[0]
    await asyncio.gather(*(echo_stream(s, [payload] * 3, []) for s in stubs))
    latencies: list[float] = []
    server_cpu, client_cpu, started = process_cpu_s(server_pid), own_cpu_s(), time.perf_counter()
    sent = await asyncio.gather(*(echo_stream(stubs[i % len(stubs)], [payload] * messages,
                                              latencies) for i in range(streams)))
    wall = time.perf_counter() - started
    server_cpu, client_cpu = process_cpu_s(server_pid) - server_cpu, own_cpu_s() - client_cpu
    for c in channels:
        await c.close(None)
    result = {"streams": streams, **summary(latencies, sum(sent), wall)}
    result["messages_per_s"] = result.pop("x_realtime")
    result["server_cpu_ms_per_message"] = 1000 * server_cpu / len(latencies)
    result["client_cpu_ms_per_message"] = 1000 * client_cpu / len(latencies)
    return result


async def transport_floor(streams: list[int], messages: int, repeats: int
                          ) -> list[dict[str, Any]]:
    """The echo levels' medians, the echo server running in a process of its own."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--echo-server", str(port)],
                              cwd=REPO, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
        return [await repeated(partial(run_echo_level, address, n, messages, server.pid),
                               repeats, ("p99_ms", "messages_per_s")) for n in streams]
    finally:
        server.terminate()
        server.wait(30)


# ---- in-process context -------------------------------------------------------------------


def _median_ms(fn: Callable[[], object], repeats: int = 15) -> float:
    """Median wall time of `fn` after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def breakdown(audio: FloatArray) -> dict[str, float]:
    """Per-window costs (ms) of the serving path's parts, timed in-process on one stream's
    audio (so the end-of-song analysis is spread over as many windows as served)."""
    from segue.embedding.analysis import build_analysis
    from segue.embedding.model import StreamModel
    from segue.embedding.stream_state import SongStream, StreamSettings
    from services.embedder.resume_token import TokenCodec, TokenContents

    model = StreamModel(REPO / "models" / "segue_stream.onnx", provider="cpu")
    spec = model.spec
    reference = SongStream(spec, "bench", FORMAT, StreamSettings())
    windows = reference.push(audio) + reference.finish()
    outputs = []
    for w in windows:
        out = model.run(w.pcm[None, :], reference.state[None, :])
        reference.state = out.state[0].copy()
        outputs.append(out)
    passes = []
    for _ in range(5):  # the median pass: one pass is at the mercy of the other jobs
        stream = SongStream(spec, "bench", FORMAT, StreamSettings())
        stream.push(audio)
        stream.finish()
        started = time.perf_counter()
        for w, out in zip(windows, outputs, strict=True):
            stream.commit(w, out)
        passes.append(1000 * (time.perf_counter() - started) / len(windows))
    codec = TokenCodec(b"bench-key")
    checkpoint_ms = _median_ms(lambda: codec.encode(TokenContents(
        "bench", spec.name, spec.version, spec.sha256, stream.snapshot())))
    analysis_ms = _median_ms(lambda: build_analysis(stream), 5)
    batch = np.stack([w.pcm for w in windows[:32]])
    states = np.zeros((len(batch), spec.state_dim), np.float32)
    return {
        "song_windows": len(windows),
        "model_ms_per_window_batch1": _median_ms(lambda: model.run(batch[:1], states[:1]), 50),
        "model_ms_per_window_batch8": _median_ms(lambda: model.run(batch[:8], states[:8])) / 8,
        "model_ms_per_window_batch32": _median_ms(lambda: model.run(batch, states)) / len(batch),
        "bookkeeping_ms_per_window": statistics.median(passes),
        "checkpoint_ms_each": checkpoint_ms,
        "checkpoint_ms_per_window": checkpoint_ms / (5.0 / spec.window_s),
        "structure_to_bytes_ms_each": _median_ms(stream.structure.to_bytes),
        "analysis_ms_per_song": analysis_ms,
        "analysis_ms_per_window": analysis_ms / len(windows),
    }


def ffmpeg_speed(files: list[Path]) -> dict[str, float]:
    """ffmpeg's decode of `files` to 22050 Hz mono, serial: audio s, wall s, x real time."""
    times, audio_s = [], 0.0
    for path in files:
        started = time.perf_counter()
        audio_s += decode(path, RATE).size / RATE
        times.append(time.perf_counter() - started)
    return {"audio_s": audio_s, "wall_s": sum(times), "x_realtime": audio_s / sum(times)}


def model_speeds(songs: list[FloatArray]) -> dict[str, float] | None:
    """Whole songs, batch 1, 1 thread, model only: the peer's speed and ours (x real time)."""
    if not PEER.is_file():
        return None
    result = {}
    for name, path in (("peer", PEER), ("ours", REPO / "models" / "segue_stream.onnx")):
        sess = session(path, 1)
        sess.run(None, feeds(sess, songs[0][None, : RATE * 3]))
        inputs = [feeds(sess, song[None, :]) for song in songs]
        started = time.perf_counter()
        for one in inputs:
            sess.run(None, one)
        result[f"{name}_x_realtime"] = (sum(s.size for s in songs) / RATE
                                        / (time.perf_counter() - started))
    result["ours_over_peer"] = result["ours_x_realtime"] / result["peer_x_realtime"]
    return result


# ---- the run ------------------------------------------------------------------------------


async def repeated(run: Callable[[], Awaitable[dict[str, Any]]], repeats: int,
                   ranges: tuple[str, ...] = ("p99_ms", "x_realtime")) -> dict[str, Any]:
    """The median of `repeats` runs, each logged to stderr as it ends."""
    runs = []
    for _ in range(repeats):
        runs.append(await run())
        print(json.dumps(runs[-1]), file=sys.stderr)
    return rep.median_run(runs, ranges)


async def serve_levels(stack: Stack, args: argparse.Namespace, songs: list[FloatArray]
                       ) -> dict[str, Any]:
    """Closed-loop, paced and (--gpu) GPU levels against one set of replicas."""
    async def level(streams: int, paced_x: float | None = None) -> dict[str, Any]:
        return await repeated(lambda: run_level(stack, streams, songs, args.seconds,
                                                paced_x=paced_x), args.repeats)

    async with EmbedderClient(stack.target("embedder")) as client:
        info = await client.model_info()
    return {
        "model": f"{info.name} {info.version}", "provider": info.execution_provider,
        "levels": [await level(n) for n in args.streams],
        "paced": [await level(TARGET_STREAMS, x) for x in args.paced],
        "gpu_levels": [await level(n) for n in GPU_STREAMS] if args.gpu else None,
    }


def bench(args: argparse.Namespace, run: rep.RunInfo) -> dict[str, Any]:
    """Every measurement, in the JSON shape of the results (and of --baseline files)."""
    files = music_files()
    songs = [decode(p, RATE) for p in files]
    env = {**SERVER_ENV, "SEGUE_EXECUTION_PROVIDER": "cuda" if args.gpu else "cpu"}
    served: dict[str, Any] = {"levels": [], "paced": [], "gpu_levels": None}
    for count in args.replicas:  # the servers of one count stop before the next start
        with tempfile.TemporaryDirectory(prefix="bench_embedder_") as logs, running_stack(
                Path(logs), services=["embedder"], replicas={"embedder": count}, env=env) as stack:
            got = asyncio.run(serve_levels(stack, args, songs))
        served["levels"] += got.pop("levels")
        served["paced"] += got.pop("paced")
        served.update(got)
    return {
        "date": run.date, "machine": run.machine, "command": run.command, "note": args.note,
        "niceness": os.nice(0), "load_before": run.load_average[0],
        "model": served["model"], "provider": served["provider"],
        "cpu_count": os.cpu_count(), "gpu": args.gpu, "replicas": args.replicas,
        "audio": f"{len(files)} files from {_shown(files[0].parent)}",
        "seconds_per_stream": args.seconds, "repeats": args.repeats,
        "levels": served["levels"], "paced": served["paced"],
        "transport": asyncio.run(transport_floor(args.streams, args.seconds, args.repeats)),
        "gpu_levels": served["gpu_levels"],
        # Stream 0's audio: the same kind and length as every served stream.
        "breakdown": breakdown(stream_audio(songs, 0, args.seconds)),
        "ffmpeg": ffmpeg_speed(files),
        "models": model_speeds(songs),
        "load_after": os.getloadavg()[0],
    }


def _shown(path: Path) -> str:
    """A path as seen from the checkout (../shared/...) when it lies beside it."""
    return str(Path("..") / path.relative_to(REPO.parent)) if path.is_relative_to(
        REPO.parent) else str(path)


# ---- the results file ---------------------------------------------------------------------


def replicas_of(row: dict[str, Any]) -> int:
    """Reports from before --replicas served one replica and have no such field."""
    return int(row.get("replicas", 1))


def nearest(rows: list[dict[str, Any]], streams: int) -> dict[str, Any]:
    """The row at `streams` streams or, when that level was not run, the closest one."""
    return min(rows, key=lambda r: (abs(r["streams"] - streams), -r["streams"]))


def _streams_text(row: dict[str, Any], wanted: int) -> str:
    return f"{row['streams']} streams" + ("" if row["streams"] == wanted
                                          else f" ({wanted} not run)")


def _plural(count: int) -> str:
    return f"{count} replica{'s' if count > 1 else ''}"


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


CLOSED_COLUMNS = ["replicas", "streams", "p50 ms", "p99 ms", "x real time", "x peer model",
                  "server CPU ms/window", "client CPU ms/window", "mean batch", "audio split %",
                  "load"]


def closed_table(rows: list[dict[str, Any]], peer_x: float | None) -> list[str]:
    """The closed-loop levels, one row per replicas x streams."""
    return rep.table(CLOSED_COLUMNS, [[
        replicas_of(r), r["streams"], f"{r['p50_ms']:.2f}",
        rep.with_range(r["p99_ms"], r["p99_ms_range"]),
        rep.with_range(r["x_realtime"], r["x_realtime_range"], 0),
        rep.ratio(r["x_realtime"], peer_x), f"{r['server_cpu_ms_per_window']:.2f}",
        f"{r['client_cpu_ms_per_window']:.2f}", f"{r.get('mean_batch_windows', 0):.1f}",
        rep.shares(r.get("replica_audio_share", [])), f"{r['load_avg_1m']:.1f}",
    ] for r in rows], "r" * len(CLOSED_COLUMNS))


def paced_table(rows: list[dict[str, Any]]) -> list[str]:
    """The paced levels: offered and achieved rate, latency."""
    return rep.table(
        ["replicas", "streams", "offered x real time", "achieved", "p50 ms", "p99 ms",
         "audio split %"],
        [[replicas_of(r), r["streams"], f"{r['offered_x_realtime']:.0f}",
          f"{r['x_realtime']:.0f}", f"{r['p50_ms']:.2f}",
          rep.with_range(r["p99_ms"], r["p99_ms_range"]),
          rep.shares(r.get("replica_audio_share", []))] for r in rows], "r" * 7)


def transport_table(rows: list[dict[str, Any]]) -> list[str]:
    """The echo server's levels."""
    return rep.table(
        ["streams", "messages/s", "p50 ms", "p99 ms", "server CPU ms/msg", "client CPU ms/msg"],
        [[e["streams"], f"{e['messages_per_s']:.0f}", f"{e['p50_ms']:.2f}",
          rep.with_range(e["p99_ms"], e["p99_ms_range"]),
          f"{e['server_cpu_ms_per_message']:.3f}", f"{e['client_cpu_ms_per_message']:.3f}"]
         for e in rows], "r" * 6)


def baseline_table(levels: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> list[str]:
    """This run's closed-loop rows beside a baseline's, matched by replicas and streams."""
    before = {(replicas_of(r), r["streams"]): r for r in baseline}
    pairs = [(before[replicas_of(r), r["streams"]], r) for r in levels
             if (replicas_of(r), r["streams"]) in before]
    return rep.table(
        ["replicas", "streams", "p50 ms before / after", "p99 ms before / after",
         "x real time before / after", "server CPU ms/window before / after"],
        [[replicas_of(r), r["streams"], rep.before_after(b["p50_ms"], r["p50_ms"]),
          rep.before_after(b["p99_ms"], r["p99_ms"], 0),
          rep.before_after(b["x_realtime"], r["x_realtime"], 0),
          rep.before_after(b["server_cpu_ms_per_window"], r["server_cpu_ms_per_window"], 2)]
         for b, r in pairs], "r" * 6)


def serving_text(report: dict[str, Any]) -> str:
    """How the replicas were served, in the report's words."""
    if report["gpu"]:
        return ("One server process on CUDA (`--gpu`), reached on one address; the GPU "
                "levels are below.")
    cores = report["cpu_count"]
    return (
        f"Replicas R = {', '.join(map(str, report['replicas']))}: R server processes "
        "(`python -m services.embedder`, started by devkit/localstack.py), each on its own "
        f"gRPC and metrics port; this machine has {cores} cores and one server is GIL-bound "
        f"near one core, so R = {cores} is one replica per core. The clients (the SDK's "
        "EmbedderClient) reach them through one target, `ipv4:127.0.0.1:p1,127.0.0.1:p2,...`, "
        "with gRPC's `round_robin` policy (segue/client/channel.py): each Analyze call goes to "
        "the next replica, as clients spread streams over the Kubernetes deployment's pods "
        "through its headless Service (deploy/k8s/base/embedder.yaml). The benchmark opens "
        "min(4, streams) clients, like a few client processes; each one's round_robin starts "
        "at a random replica, so with one or two streams per client the split can be uneven "
        "(audio split % shows each replica's share). Server CPU, mean batch and queue delay "
        "are summed over the replicas; the echo server is one process. The servers of one R "
        "stop before the next R starts.")


def breakdown_lines(report: dict[str, Any]) -> list[str]:
    """Where the server's time goes per window, against the CPU it measured."""
    b, levels = report["breakdown"], report["levels"]
    parts = (b["model_ms_per_window_batch8"] + b["bookkeeping_ms_per_window"]
             + b["checkpoint_ms_per_window"] + b["analysis_ms_per_window"])
    echo = report["transport"]
    echo32 = next((e for e in echo if e["streams"] == TARGET_STREAMS), echo[-1])
    # One replica: its CPU per window is one server's, comparable with the in-process parts.
    single = 1 if any(replicas_of(r) == 1 for r in levels) else min(map(replicas_of, levels))
    measured = nearest([r for r in levels if replicas_of(r) == single], TARGET_STREAMS)
    top = max(map(replicas_of, levels))
    at_top = nearest([r for r in levels if replicas_of(r) == top], measured["streams"])
    return [
        f"Timed on stream 0's {report['seconds_per_stream']:g} s of audio.", "",
        f"- model: {b['model_ms_per_window_batch1']:.3f} ms at batch 1, "
        f"{b['model_ms_per_window_batch8']:.3f} at batch 8, "
        f"{b['model_ms_per_window_batch32']:.3f} at batch 32 (1 ORT thread);",
        "- bookkeeping (segments, loudness, structure push, the window message): "
        f"{b['bookkeeping_ms_per_window']:.3f} ms;",
        f"- checkpoint: {b['checkpoint_ms_each']:.2f} ms each (of which the structure state's "
        f"to_bytes {b['structure_to_bytes_ms_each']:.2f}), {b['checkpoint_ms_per_window']:.3f} "
        "ms per window at one per 5 s;",
        f"- end-of-song analysis: {b['analysis_ms_per_song']:.1f} ms per {b['song_windows']}"
        f"-window song, {b['analysis_ms_per_window']:.3f} ms per window;",
        f"- sum of those: {parts:.2f} ms; {_plural(single)} measured "
        f"{measured['server_cpu_ms_per_window']:.2f} ms of server CPU per window at "
        f"{_streams_text(measured, TARGET_STREAMS)}, so gRPC, asyncio and the batcher take "
        f"about {measured['server_cpu_ms_per_window'] - parts:.2f} ms (the echo server below "
        f"needs {echo32['server_cpu_ms_per_message']:.2f} ms per message by itself)"
        + (f"; {top} replicas together used {at_top['server_cpu_ms_per_window']:.2f} ms per "
           f"window at {at_top['streams']} streams" if top != single else "") + ".",
    ]


def target_summary(report: dict[str, Any]) -> str:
    """The targets, met or not, at the most replicas measured (computed from the tables)."""
    levels = report["levels"]
    top = max(replicas_of(r) for r in levels)
    closed = nearest([r for r in levels if replicas_of(r) == top], TARGET_STREAMS)
    parts = [f"aggregate, closed loop, {_plural(top)} at "
             f"{_streams_text(closed, TARGET_STREAMS)}: {closed['x_realtime']:.0f}x real time "
             f"vs >= {TARGET_X_REALTIME:.0f}x, "
             f"{_verdict(closed['x_realtime'] >= TARGET_X_REALTIME)}"]
    paced = sorted((r for r in report["paced"] if replicas_of(r) == top),
                   key=lambda r: float(r["offered_x_realtime"]))
    each = ", ".join(f"{r['p99_ms']:.1f} ms at {r['offered_x_realtime']:.0f}x offered "
                     f"(achieved {r['x_realtime']:.0f}x), {_verdict(r['p99_ms'] <= TARGET_P99_MS)}"
                     for r in paced)
    parts.append(f"p99 per chunk, paced, {_plural(top)} at {paced[0]['streams']} streams: "
                 f"{each}, vs <= {TARGET_P99_MS:.0f} ms" if paced
                 else "p99 per chunk, paced: not measured (no --paced rates)")
    return (f"Targets: p99 <= {TARGET_P99_MS:.0f} ms per 1 s chunk at {TARGET_STREAMS} "
            f"streams; >= {TARGET_X_REALTIME:.0f}x real time aggregate. This run: "
            + "; ".join(parts) + ".")


def markdown(report: dict[str, Any], run: rep.RunInfo) -> str:
    """The results file, top to bottom."""
    models, echo = report["models"], report["transport"]
    peer_x = models["peer_x_realtime"] if models else None
    echo32 = next((e for e in echo if e["streams"] == TARGET_STREAMS), None)
    ff = report["ffmpeg"]
    lines = rep.header(f"Embedder benchmark, {report['date']}", run, [
        f"Load average {report['load_before']:.1f} before the run, "
        f"{report['load_after']:.1f} after (other jobs share the cores). {report['note']}",
        f"Model: {report['model']} on {report['provider']}. Audio: {report['audio']}; every "
        f"stream is {report['seconds_per_stream']:g} s long (stream i plays the files one "
        "after another from file i mod n, cycling, cut to that length; a typical song is 3-4 "
        "minutes) in 1 s chunks (22050 Hz f32), checkpoints every 5 s. Client and servers on "
        f"the same cores, loopback gRPC. Medians of {report['repeats']} repetitions (p99 and "
        "speed ranges in brackets)."])
    lines += [serving_text(report), "",
              "## Closed loop (each stream sends its next chunk when the previous window is back)",
              "", *closed_table(report["levels"], peer_x), "",
              "x peer model: the served aggregate speed over the peer model's own in-process "
              "speed (below). By Little's law a closed loop's mean latency is streams / "
              "throughput, so p99 <= 10 ms at 32 closed-loop streams needs well over 3200 "
              "windows/s" + (f" (the bare gRPC echo server below, with no work per message, has "
                             f"a p99 of {echo32['p99_ms']:.0f} ms at 32 closed-loop streams in "
                             "this run)" if echo32 else "")
              + "; latency is therefore also measured paced, at a fixed offered load."]
    if report["paced"]:
        lines += ["", "## Paced (streams together offer a fixed rate; latency at that load)", "",
                  *paced_table(report["paced"])]
    lines += ["", "## Where the server's time goes, per window (in-process timings, same audio)",
              "", *breakdown_lines(report), "",
              "## Transport floor: a gRPC echo server (same message sizes, same client)", "",
              *transport_table(echo), "",
              f"ffmpeg decode of the same files to 22050 Hz mono: {ff['x_realtime']:.0f}x real "
              "time (one process per file, serial, wall clock)."]
    if models:
        lines.append(f"Model only, whole song, batch 1, 1 thread, in-process: ours "
                     f"{models['ours_x_realtime']:.0f}x real time, the peer (MECOMP "
                     f"audio_embedding_model.onnx) {models['peer_x_realtime']:.0f}x: ours is "
                     f"{models['ours_over_peer']:.2f}x the peer's speed.")
    if baseline := report.get("baseline"):
        lines += ["", f"## Before and after: {baseline['label']}", "",
                  f"An earlier run (load {baseline['load_before']:.1f} then; "
                  f"{report['load_before']:.1f} for this run; its settings are in its label). "
                  "Closed loop, medians, rows matched by replicas and streams (a baseline "
                  "without replicas served one):", "",
                  *baseline_table(report["levels"], baseline["levels"])]
    if gpu_levels := report.get("gpu_levels"):
        lines += ["", f"## GPU: one replica on {report['provider']}, closed loop", "",
                  *closed_table(gpu_levels, peer_x)]
    lines += ["", target_summary(report)]
    if not gpu_levels:
        lines += ["", f"GPU (--gpu, {' and '.join(map(str, GPU_STREAMS))} streams): not "
                  "measured (no GPU on this machine)."]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=None,
                        help="server processes per run, each count in turn (default: 1 and "
                             "os.cpu_count(), i.e. one per core)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=int, default=120,
                        help="audio per stream, whole seconds (default 120, about a song)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per level (medians)")
    parser.add_argument("--paced", type=float, nargs="*", default=[32.0, 500.0, 1000.0],
                        help=f"aggregate x real time offered by {TARGET_STREAMS} paced streams")
    parser.add_argument("--gpu", action="store_true",
                        help="serve one replica on CUDA and add "
                             f"{' and '.join(map(str, GPU_STREAMS))} streams")
    parser.add_argument("--date", default=None, help="date in the report name (default today)")
    parser.add_argument("--note", default="Shared, noisy machine: figures vary run to run.")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="JSON of an earlier run (e.g. of the previous code) to compare with")
    parser.add_argument("--baseline-label", default="previous code",
                        help="what the baseline run measured")
    parser.add_argument("--echo-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpu:
        # One GPU, one server: more processes would only share the device.
        if args.replicas not in (None, [1]):
            parser.error("--gpu serves one replica; leave out --replicas")
        args.replicas = [1]
    else:
        args.replicas = sorted(set(args.replicas or [1, os.cpu_count() or 1]))
    if min(args.replicas) < 1 or args.seconds < 1 or args.repeats < 1:
        parser.error("--replicas, --seconds and --repeats must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if args.echo_server is not None:
        asyncio.run(serve_echo(args.echo_server))
        return 0
    run = rep.capture_run(args.date)
    report = bench(args, run)
    if args.baseline is not None:
        baseline = json.loads(args.baseline.read_text())
        report["baseline"] = {"label": args.baseline_label, "levels": baseline["levels"],
                              "load_before": baseline["load_before"],
                              "breakdown": baseline["breakdown"]}
    text = markdown(report, run)
    md, _ = rep.write_results(rep.results_stem(args.out, "embedder", run.date), text, report)
    print(text)
    print(f"wrote {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
