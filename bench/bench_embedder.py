"""Embedder benchmark: per-chunk latency and aggregate speed at 1-64 concurrent streams.

Real servers (`python -m services.embedder`) run as subprocesses; N concurrent clients on
loopback (in this process, on the same cores) each stream songs in 1 s chunks. One server is
GIL-bound near one core, so the service scales out by replicas: for each replica count R
(`--replicas`, default 1 and one per core) R server processes run, each on its own gRPC and
metrics port, and every client channel targets all of them at once
(`ipv4:127.0.0.1:p1,127.0.0.1:p2,...`) with gRPC's `round_robin` policy, as the SDK does
against the Kubernetes deployment's headless Service: each Analyze call goes to the next
replica. Server CPU, batch sizes and queue delays are summed over the replicas.

- Closed loop (the throughput test): each stream sends a chunk, waits for its window, sends
  the next. Latency is that of one chunk under N-way load, throughput is what the servers
  sustain, and by Little's law mean latency = N / throughput.
- Paced (the latency test): 32 streams together offer a fixed aggregate rate (e.g. 1000x real
  time = one chunk per stream every 32 ms, phases spread); latency is then measured at that
  load instead of at saturation.

Every stream is `--seconds` long (default 120 s, about a song: the end-of-song analysis is
then weighed per window as in real use): stream i plays the music files one after another
from file i mod n, cycling, cut to that length.

Each closed-loop level also reports the CPU time the servers and the client used per window,
the servers' mean batch size (from their Prometheus metrics) and how the audio was split over
the replicas. For context, measured in the same run: where the server's time goes per window
(model, bookkeeping, checkpoints, the end-of-song analysis; timed in-process on stream 0's
audio, the rest being gRPC, asyncio and the batcher), the transport floor (a gRPC echo server
in one process, same message sizes, same client), ffmpeg's decode speed (the floor of any
pipeline starting from files) and the peer model (MECOMP's ONNX embedder, ../shared/peers)
beside ours, model only.

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
import datetime as dt
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segue.audio import decode, mono_to_pcm  # noqa: E402
from segue.machine import describe_machine  # noqa: E402
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc  # noqa: E402

FloatArray = npt.NDArray[np.float32]
RATE = 22050
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
SHARED = REPO.parent / "shared"
PEER = SHARED / "peers" / "mecomp_audio_embedding_model.onnx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ECHO_METHOD = "/bench.Echo/Echo"
# An AnalyzeResponse with one window of 64 + 64 + 64 floats is about this size.
ECHO_REPLY_BYTES = 800
# The targets: p99 per 1 s chunk at 32 streams, and aggregate speed.
TARGET_STREAMS = 32
TARGET_P99_MS = 10.0
TARGET_X_REALTIME = 1000.0
GPU_STREAMS = (256, 1024)


def music_files() -> list[Path]:
    shared = sorted((SHARED / "music" / "librosa").glob("*.ogg"))
    if shared:
        return shared
    from immich_memories_music import tracks_dir

    return sorted(Path(tracks_dir()).rglob("*.opus"))[:8]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open until every one is chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 << 20),
    # Balance per call over every replica the target names, as the SDK (segue/client) does;
    # gRPC's default pick_first would send every stream of a channel to one replica.
    ("grpc.lb_policy_name", "round_robin"),
]


def open_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


# ---- servers ----------------------------------------------------------------------------


def start_server(port: int, metrics_port: int, extra_env: dict[str, str]
                 ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SEGUE_GRPC_HOST": "127.0.0.1", "SEGUE_GRPC_PORT": str(port),
           "SEGUE_METRICS_PORT": str(metrics_port), "SEGUE_LOG_LEVEL": "warning",
           "SEGUE_MAX_SONG_S": "36000", "SEGUE_MAX_CONCURRENT_STREAMS": "2048", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env,
                            stderr=subprocess.DEVNULL)


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


@dataclass
class Replicas:
    """Embedder server processes, each on its own ports, reached through one target."""

    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    metrics_ports: list[int]

    @property
    def count(self) -> int:
        return len(self.procs)

    @property
    def target(self) -> str:
        """`127.0.0.1:p` for one replica, else `ipv4:127.0.0.1:p1,127.0.0.1:p2,...`."""
        addresses = [f"127.0.0.1:{p}" for p in self.ports]
        return addresses[0] if len(addresses) == 1 else "ipv4:" + ",".join(addresses)

    def cpu_s(self) -> float:
        return sum(process_cpu_s(p.pid) for p in self.procs)

    def scrape(self) -> list[dict[str, float]]:
        return [scrape(port) for port in self.metrics_ports]

    def stop(self) -> None:
        stop_processes(self.procs)


async def start_replicas(count: int, env: dict[str, str]) -> Replicas:
    """Starts `count` servers and waits until every one of them answers."""
    ports = free_ports(2 * count)
    servers = Replicas([start_server(port, metrics, env)
                        for port, metrics in zip(ports[:count], ports[count:], strict=True)],
                       ports[:count], ports[count:])
    try:
        await asyncio.gather(*(wait_ready(f"127.0.0.1:{port}") for port in servers.ports))
    except BaseException:
        servers.stop()
        raise
    return servers


def _identity(data: bytes) -> bytes:
    return data


async def serve_echo(port: int) -> None:
    """The transport floor: a bidi stream that answers each message with ~one window's bytes."""

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


def start_echo_server(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--echo-server", str(port)], cwd=REPO,
                            stderr=subprocess.DEVNULL)


SCRAPED = ("segue_embedder_batch_size_sum", "segue_embedder_batch_size_count",
           "segue_embedder_queue_delay_seconds_sum", "segue_embedder_queue_delay_seconds_count",
           "segue_embedder_audio_seconds_total")


def scrape(metrics_port: int) -> dict[str, float]:
    """Sums and counts of one embedder's batch histograms, and the audio it analysed."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    values: dict[str, float] = {}
    for line in text.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in SCRAPED:
            values[name] = float(value)
    return values


async def wait_ready(address: str) -> None:
    async with open_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)


# ---- clients ----------------------------------------------------------------------------

Schedule = Callable[[int], float] | None  # chunk index -> when to send it (perf_counter)


async def one_stream(stub: Any, song_id: str, chunks: list[bytes], latencies: list[float],
                     schedule: Schedule = None) -> float:
    """Streams `chunks` (1 s each), each sent after the previous one's window came back and,
    when paced, not before its scheduled time."""
    call = stub.Analyze()
    fmt = common_pb2.AudioFormat(sample_rate_hz=RATE, channels=1,
                                 sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
    await call.write(embedder_pb2.AnalyzeRequest(config=embedder_pb2.StreamConfig(
        song_id=song_id, format=fmt, checkpoint_interval_s=5.0)))
    for k, pcm in enumerate(chunks):
        if schedule is not None:
            delay = schedule(k) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent = time.perf_counter()
        await call.write(embedder_pb2.AnalyzeRequest(chunk=embedder_pb2.AudioChunk(pcm=pcm)))
        while True:
            response = await call.read()
            if response.WhichOneof("kind") == "windows":
                latencies.append(time.perf_counter() - sent)
                break
    await call.write(embedder_pb2.AnalyzeRequest(end=embedder_pb2.EndOfStream()))
    await call.done_writing()
    while await call.read() is not _EOF:
        pass
    return float(len(chunks))


async def echo_stream(stub: Any, chunks: list[bytes], latencies: list[float]) -> float:
    call = stub()
    for pcm in chunks:
        sent = time.perf_counter()
        await call.write(pcm)
        await call.read()
        latencies.append(time.perf_counter() - sent)
    await call.done_writing()
    return float(len(chunks))


def stream_audio(songs: list[FloatArray], first: int, seconds: int) -> FloatArray:
    """The songs one after another from `songs[first % n]`, cycling, cut to `seconds`."""
    if not any(song.size for song in songs):
        raise ValueError("no audio in the music files")
    length = seconds * RATE
    parts: list[FloatArray] = []
    total, k = 0, first
    while total < length:
        song = songs[k % len(songs)]
        parts.append(song)
        total += song.size
        k += 1
    return np.concatenate(parts)[:length]


def song_chunks(songs: list[FloatArray], streams: int, seconds: int) -> list[list[bytes]]:
    """Every stream's 1 s chunks; stream i's audio is `stream_audio(songs, i, seconds)`."""
    # Streams with the same first song share one list: 1024 streams of 2 minutes would
    # otherwise hold 10 GB of PCM.
    by_first: dict[int, list[bytes]] = {}
    out = []
    for i in range(streams):
        first = i % len(songs)
        if first not in by_first:
            audio = stream_audio(songs, first, seconds)
            by_first[first] = [mono_to_pcm(audio[j : j + RATE], common_pb2.SAMPLE_FORMAT_F32LE)
                               for j in range(0, audio.size, RATE)]
        out.append(by_first[first])
    return out


def _summary(latencies: list[float], audio_s: float, wall: float) -> dict[str, float]:
    lat_ms = np.asarray(latencies) * 1000
    return {
        "chunks": len(latencies),
        "audio_s": audio_s,
        "wall_s": wall,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "x_realtime": audio_s / wall,
    }


def _delta(before: list[dict[str, float]], after: list[dict[str, float]], name: str
           ) -> list[float]:
    """Per replica, how much the metric `name` grew during the run."""
    return [a.get(name, 0.0) - b.get(name, 0.0) for b, a in zip(before, after, strict=True)]


async def run_level(servers: Replicas, streams: int, songs: list[FloatArray], seconds: int, *,
                    paced_x: float | None = None) -> dict[str, Any]:
    """One closed-loop (or, with paced_x, paced) run of `streams` concurrent songs."""
    # A few channels, like a few client processes, rather than one HTTP/2 connection.
    channels = [open_channel(servers.target) for _ in range(min(4, streams))]
    stubs = [embedder_pb2_grpc.EmbedderStub(c) for c in channels]
    chunks = song_chunks(songs, streams, seconds)
    warm = song_chunks(songs, 1, 3)[0]
    # The first warm-up calls open the channels (each goes to whichever replica is ready
    # first); the second round, one call per replica on each channel, reaches every replica.
    await asyncio.gather(*(one_stream(s, "warm", warm, []) for s in stubs))
    await asyncio.gather(*(one_stream(s, "warm", warm, [])
                           for s in stubs for _ in range(servers.count)))
    latencies: list[float] = []
    before = servers.scrape()
    load = load_average()
    server_cpu, client_cpu = servers.cpu_s(), own_cpu_s()
    started = time.perf_counter()

    def schedule_for(i: int) -> Schedule:
        if paced_x is None:
            return None
        period = streams / paced_x  # each stream's chunk interval for that aggregate rate
        first = started + period * i / streams
        return lambda k: first + k * period

    audio_s = await asyncio.gather(*(
        one_stream(stubs[i % len(stubs)], f"s{i}", c, latencies, schedule_for(i))
        for i, c in enumerate(chunks)))
    wall = time.perf_counter() - started
    server_cpu = servers.cpu_s() - server_cpu
    client_cpu = own_cpu_s() - client_cpu
    after = servers.scrape()
    for c in channels:
        await c.close(None)
    result: dict[str, Any] = {"replicas": servers.count, "streams": streams,
                              **_summary(latencies, sum(audio_s), wall), "load_avg_1m": load}
    windows = len(latencies)
    result["server_cpu_ms_per_window"] = 1000 * server_cpu / windows
    result["client_cpu_ms_per_window"] = 1000 * client_cpu / windows
    if paced_x is not None:
        result["offered_x_realtime"] = paced_x
    runs = sum(_delta(before, after, "segue_embedder_batch_size_count"))
    total = sum(_delta(before, after, "segue_embedder_batch_size_sum"))
    waits = sum(_delta(before, after, "segue_embedder_queue_delay_seconds_sum"))
    count = sum(_delta(before, after, "segue_embedder_queue_delay_seconds_count"))
    result["mean_batch_windows"] = total / runs if runs else 0.0
    result["mean_queue_delay_ms"] = 1000 * waits / count if count else 0.0
    # What round_robin made of it: each replica's share of the audio analysed.
    served = _delta(before, after, "segue_embedder_audio_seconds_total")
    result["replica_audio_share"] = [a / sum(served) if sum(served) else 0.0 for a in served]
    return result


async def run_echo_level(address: str, streams: int, chunks_per_stream: int, *,
                         server_pid: int) -> dict[str, Any]:
    channels = [open_channel(address) for _ in range(min(4, streams))]
    stubs = [c.stream_stream(ECHO_METHOD, request_serializer=_identity,
                             response_deserializer=_identity) for c in channels]
    payload = mono_to_pcm(np.zeros(RATE, np.float32), common_pb2.SAMPLE_FORMAT_F32LE)
    await asyncio.gather(*(echo_stream(s, [payload] * 3, []) for s in stubs))
    latencies: list[float] = []
    server_cpu, client_cpu = process_cpu_s(server_pid), own_cpu_s()
    started = time.perf_counter()
    sent = await asyncio.gather(*(echo_stream(stubs[i % len(stubs)],
                                              [payload] * chunks_per_stream, latencies)
                                  for i in range(streams)))
    wall = time.perf_counter() - started
    server_cpu = process_cpu_s(server_pid) - server_cpu
    client_cpu = own_cpu_s() - client_cpu
    for c in channels:
        await c.close(None)
    result = {"streams": streams, **_summary(latencies, sum(sent), wall)}
    result["messages_per_s"] = result.pop("x_realtime")
    result["server_cpu_ms_per_message"] = 1000 * server_cpu / len(latencies)
    result["client_cpu_ms_per_message"] = 1000 * client_cpu / len(latencies)
    return result


# ---- in-process context -----------------------------------------------------------------


def _best_ms(fn: Callable[[], object], repeats: int = 15) -> float:
    """Median wall time of `fn` after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def breakdown(audio: FloatArray) -> dict[str, float]:
    """Per-window costs of the serving path's parts, timed in-process on one stream's audio
    (`stream_audio`, so the end-of-song analysis is spread over as many windows as served)."""
    from segue.embedding.analysis import build_analysis
    from segue.embedding.model import StreamModel
    from segue.embedding.stream_state import SongStream, StreamSettings
    from services.embedder.resume_token import TokenCodec, TokenContents

    model = StreamModel(REPO / "models" / "segue_stream.onnx", provider="cpu")
    spec = model.spec
    fmt = common_pb2.AudioFormat(sample_rate_hz=RATE, channels=1,
                                 sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
    reference = SongStream(spec, "bench", fmt, StreamSettings())
    windows = reference.push(audio) + reference.finish()
    outputs = []
    for w in windows:
        out = model.run(w.pcm[None, :], reference.state[None, :])
        reference.state = out.state[0].copy()
        outputs.append(out)
    passes = []
    for _ in range(5):  # the median pass: one pass is at the mercy of the other jobs
        stream = SongStream(spec, "bench", fmt, StreamSettings())
        stream.push(audio)
        stream.finish()
        started = time.perf_counter()
        for w, out in zip(windows, outputs, strict=True):
            stream.commit(w, out)
        passes.append(1000 * (time.perf_counter() - started) / len(windows))
    commit_ms = statistics.median(passes)
    codec = TokenCodec(b"bench-key")

    def checkpoint() -> bytes:
        return codec.encode(TokenContents("bench", spec.name, spec.version, spec.sha256,
                                          stream.snapshot()))

    batch = np.stack([w.pcm for w in windows[:32]])
    states = np.zeros((len(batch), spec.state_dim), np.float32)
    checkpoint_ms = _best_ms(checkpoint)
    analysis_ms = _best_ms(lambda: build_analysis(stream), 5)
    per_song = len(windows)
    return {
        "song_windows": per_song,
        "model_ms_per_window_batch1": _best_ms(lambda: model.run(batch[:1], states[:1]), 50),
        "model_ms_per_window_batch8": _best_ms(lambda: model.run(batch[:8], states[:8])) / 8,
        "model_ms_per_window_batch32": _best_ms(lambda: model.run(batch, states)) / len(batch),
        "bookkeeping_ms_per_window": commit_ms,
        "checkpoint_ms_each": checkpoint_ms,
        "checkpoint_ms_per_window": checkpoint_ms / (5.0 / spec.window_s),
        "structure_to_bytes_ms_each": _best_ms(stream.structure.to_bytes),
        "analysis_ms_per_song": analysis_ms,
        "analysis_ms_per_window": analysis_ms / per_song,
    }


def ffmpeg_speed(files: list[Path]) -> dict[str, float]:
    times, audio_s = [], 0.0
    for path in files:
        started = time.perf_counter()
        audio = decode(path, RATE)
        times.append(time.perf_counter() - started)
        audio_s += audio.size / RATE
    return {"audio_s": audio_s, "wall_s": sum(times), "x_realtime": audio_s / sum(times)}


def model_speeds(songs: list[FloatArray]) -> dict[str, float] | None:
    """Whole-song, batch 1, 1 thread, model only: the peer's and ours, in the same run."""
    if not PEER.is_file():
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    peer = ort.InferenceSession(str(PEER), options, providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(str(REPO / "models" / "segue_stream.onnx"), options,
                                providers=["CPUExecutionProvider"])
    state_dim = int(ours.get_modelmeta().custom_metadata_map["segue.state_dim"])
    window = int(ours.get_modelmeta().custom_metadata_map["segue.window_samples"])
    peer_input = peer.get_inputs()[0].name

    def run_peer(song: FloatArray) -> object:
        return peer.run(None, {peer_input: song[None, :]})

    def run_ours(song: FloatArray) -> object:
        whole = song[: song.size // window * window]
        return ours.run(None, {"pcm": whole[None, :],
                               "state": np.zeros((1, state_dim), np.float32)})

    result = {}
    for name, fn in (("peer", run_peer), ("ours", run_ours)):
        fn(songs[0][: RATE * 3])
        walls = []
        for song in songs:
            started = time.perf_counter()
            fn(song)
            walls.append(time.perf_counter() - started)
        audio_s = sum(s.size for s in songs) / RATE
        result[f"{name}_x_realtime"] = audio_s / sum(walls)
    result["ours_over_peer"] = result["ours_x_realtime"] / result["peer_x_realtime"]
    return result


def _shown(path: Path) -> str:
    """A path as seen from the checkout (../shared/...) when it lies beside it."""
    try:
        return str(Path("..") / path.relative_to(REPO.parent))
    except ValueError:
        return str(path)


def machine() -> str:
    return describe_machine()


# ---- report -----------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over repeated runs, with the p99 range kept beside."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if all(v == value for v in values):
            out[key] = value  # the level's settings (replicas, streams, offered rate) stay ints
        elif isinstance(value, int | float):
            out[key] = statistics.median(values)
        elif isinstance(value, list):
            out[key] = [statistics.median(column) for column in zip(*values, strict=True)]
        else:
            out[key] = value
    out["repeats"] = len(runs)
    out["p99_ms_range"] = [min(r["p99_ms"] for r in runs), max(r["p99_ms"] for r in runs)]
    out["x_realtime_range" if "x_realtime" in out else "messages_per_s_range"] = [
        min(r.get("x_realtime", r.get("messages_per_s", 0.0)) for r in runs),
        max(r.get("x_realtime", r.get("messages_per_s", 0.0)) for r in runs)]
    return out


def replicas_of(row: dict[str, Any]) -> int:
    """Reports from before --replicas served one replica and have no such field."""
    return int(row.get("replicas", 1))


def nearest(rows: list[dict[str, Any]], streams: int) -> dict[str, Any]:
    """The row at `streams` streams or, when that level was not run, the closest one."""
    return min(rows, key=lambda r: (abs(r["streams"] - streams), -r["streams"]))


def _streams_text(row: dict[str, Any], wanted: int) -> str:
    note = "" if row["streams"] == wanted else f" ({wanted} not run)"
    return f"{row['streams']} streams{note}"


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def _split(row: dict[str, Any]) -> str:
    shares = row.get("replica_audio_share") or []
    return "/".join(f"{100 * x:.0f}" for x in shares) if len(shares) > 1 else "-"


CLOSED_HEADER = [
    "| replicas | streams | p50 ms | p99 ms | x real time | x peer model "
    "| server CPU ms/window | client CPU ms/window | mean batch | audio split % | load |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def closed_row(r: dict[str, Any], peer_x: float | None) -> str:
    lo, hi = r["p99_ms_range"]
    xlo, xhi = r["x_realtime_range"]
    ratio = f"{r['x_realtime'] / peer_x:.2f}" if peer_x else "-"
    return (f"| {replicas_of(r)} | {r['streams']} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.1f} [{lo:.0f}-{hi:.0f}] "
            f"| {r['x_realtime']:.0f} [{xlo:.0f}-{xhi:.0f}] | {ratio} "
            f"| {r['server_cpu_ms_per_window']:.2f} "
            f"| {r['client_cpu_ms_per_window']:.2f} | {r.get('mean_batch_windows', 0):.1f} "
            f"| {_split(r)} | {r['load_avg_1m']:.1f} |")


def serving_text(report: dict[str, Any]) -> str:
    """How the replicas were served, in the report's words."""
    if report["gpu"]:
        return ("One server process on CUDA (`--gpu`), reached on one address; the GPU "
                "levels are below.")
    counts = ", ".join(str(c) for c in report["replicas"])
    return (
        f"Replicas R = {counts}: R server processes (`python -m services.embedder`), each on "
        f"its own gRPC and metrics port; this machine has {report['cpu_count']} cores and "
        f"one server is GIL-bound near one core, so R = {report['cpu_count']} is one replica "
        "per core. The client reaches them through one target, "
        "`ipv4:127.0.0.1:p1,127.0.0.1:p2,...`, with gRPC's `round_robin` policy, as the SDK "
        "sets it (segue/client/channel.py): each Analyze call goes to the next replica, as "
        "clients spread streams over the Kubernetes deployment's pods (one CPU requested "
        "each) through its headless Service (`dns:///segue-embedder-headless:50051`, "
        "deploy/k8s/base/embedder.yaml). "
        "The client opens min(4, streams) channels, like a few client processes; each "
        "channel's round_robin starts at a random replica, so with only one or two streams "
        "per channel the split can be uneven (audio split, each replica's share of the audio "
        "analysed, shows it). Server CPU, mean batch and queue delay are summed over the "
        "replicas. The echo server (transport floor) is one process. The servers of one R are "
        "stopped before the next R starts.")


def target_summary(report: dict[str, Any]) -> str:
    """The targets, met or not, at the most replicas measured (computed from the tables)."""
    levels = report["levels"]
    top = max(replicas_of(r) for r in levels)
    closed = nearest([r for r in levels if replicas_of(r) == top], TARGET_STREAMS)
    parts = [
        f"aggregate, closed loop, {top} replica{'s' if top > 1 else ''} at "
        f"{_streams_text(closed, TARGET_STREAMS)}: {closed['x_realtime']:.0f}x real time vs "
        f">= {TARGET_X_REALTIME:.0f}x, {_verdict(closed['x_realtime'] >= TARGET_X_REALTIME)}"]
    paced = sorted((r for r in report["paced"] if replicas_of(r) == top),
                   key=lambda r: float(r["offered_x_realtime"]))
    if paced:
        each = ", ".join(
            f"{r['p99_ms']:.1f} ms at {r['offered_x_realtime']:.0f}x offered (achieved "
            f"{r['x_realtime']:.0f}x), {_verdict(r['p99_ms'] <= TARGET_P99_MS)}"
            for r in paced)
        parts.append(f"p99 per chunk, paced, {top} replica{'s' if top > 1 else ''} at "
                     f"{paced[0]['streams']} streams: {each}, vs <= {TARGET_P99_MS:.0f} ms")
    else:
        parts.append("p99 per chunk, paced: not measured (no --paced rates)")
    return (f"Targets: p99 <= {TARGET_P99_MS:.0f} ms per 1 s chunk at {TARGET_STREAMS} "
            f"streams; >= {TARGET_X_REALTIME:.0f}x real time aggregate. This run: "
            + "; ".join(parts) + ".")


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"embedder_{report['date']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    models = report["models"]
    lines = [
        f"# Embedder benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']}; load average {report['load_before']:.1f} before the "
        f"run, {report['load_after']:.1f} after (other jobs share the cores). {report['note']}",
        f"Model: {report['model']} on {report['provider']}. Audio: {report['audio']}; every "
        f"stream is {report['seconds_per_stream']:g} s long (stream i plays the files one "
        "after another from file i mod n, cycling, cut to that length; a typical song is 3-4 "
        "minutes) in 1 s chunks (22050 Hz f32), checkpoints every 5 s. Client and servers on "
        f"the same cores, loopback gRPC. Medians of {report['repeats']} repetitions (p99 and "
        "speed ranges in brackets).",
        "",
        serving_text(report),
        "",
        "## Closed loop (each stream sends its next chunk when the previous window is back)",
        "",
        *CLOSED_HEADER,
    ]
    peer_x = models["peer_x_realtime"] if models else None
    lines += [closed_row(r, peer_x) for r in report["levels"]]
    echo_at_32 = next((e for e in report["transport"] if e["streams"] == 32), None)
    lines += ["", "x peer model: the served aggregate speed over the peer model's own in-process "
              "speed (below). By Little's law a closed loop's mean latency is streams / "
              "throughput, so p99 <= 10 ms at 32 closed-loop streams needs well over 3200 "
              "windows/s"
              + (f" (the bare gRPC echo server below, with no work per message, has a p99 of "
                 f"{echo_at_32['p99_ms']:.0f} ms at 32 closed-loop streams in this run)"
                 if echo_at_32 else "")
              + "; latency is therefore also measured paced, at a fixed offered load."]
    if report["paced"]:
        lines += ["", "## Paced (streams together offer a fixed rate; latency at that load)", "",
                  "| replicas | streams | offered x real time | achieved | p50 ms | p99 ms "
                  "| audio split % |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["paced"]:
            lo, hi = r["p99_ms_range"]
            lines.append(f"| {replicas_of(r)} | {r['streams']} "
                         f"| {r['offered_x_realtime']:.0f} "
                         f"| {r['x_realtime']:.0f} | {r['p50_ms']:.2f} "
                         f"| {r['p99_ms']:.1f} [{lo:.0f}-{hi:.0f}] | {_split(r)} |")
    b = report["breakdown"]
    lines += [
        "", "## Where the server's time goes, per window (in-process timings, same audio)", "",
        *([f"{report['breakdown_note']}.", ""] if report.get("breakdown_note") else []),
        f"Timed on stream 0's {report['seconds_per_stream']:g} s of audio.",
        "",
        f"- model: {b['model_ms_per_window_batch1']:.3f} ms at batch 1, "
        f"{b['model_ms_per_window_batch8']:.3f} at batch 8, "
        f"{b['model_ms_per_window_batch32']:.3f} at batch 32 (1 ORT thread);",
        f"- bookkeeping (segments, loudness, structure push, the window message): "
        f"{b['bookkeeping_ms_per_window']:.3f} ms;",
        f"- checkpoint: {b['checkpoint_ms_each']:.2f} ms each (of which the structure "
        f"state's to_bytes {b['structure_to_bytes_ms_each']:.2f}), "
        f"{b['checkpoint_ms_per_window']:.3f} ms per window at one per 5 s;",
        f"- end-of-song analysis: {b['analysis_ms_per_song']:.1f} ms per "
        f"{b['song_windows']}-window song, {b['analysis_ms_per_window']:.3f} ms per window;",
    ]
    parts = (b["model_ms_per_window_batch8"] + b["bookkeeping_ms_per_window"]
             + b["checkpoint_ms_per_window"] + b["analysis_ms_per_window"])
    echo = report["transport"]
    echo32 = next((e for e in echo if e["streams"] == 32), echo[-1])
    levels = report["levels"]
    # One replica: its CPU per window is one server's, comparable with the in-process parts.
    single = 1 if any(replicas_of(r) == 1 for r in levels) else min(map(replicas_of, levels))
    measured = nearest([r for r in levels if replicas_of(r) == single], TARGET_STREAMS)
    top = max(map(replicas_of, levels))
    at_top = nearest([r for r in levels if replicas_of(r) == top], measured["streams"])
    lines += [
        f"- sum of those: {parts:.2f} ms; {single} replica{'s' if single > 1 else ''} "
        f"measured {measured['server_cpu_ms_per_window']:.2f} ms of server CPU per window at "
        f"{_streams_text(measured, TARGET_STREAMS)}, so gRPC, asyncio and the batcher take "
        f"about {measured['server_cpu_ms_per_window'] - parts:.2f} ms (the echo server below "
        f"needs {echo32['server_cpu_ms_per_message']:.2f} ms per message by itself)"
        + (f"; {top} replicas together used {at_top['server_cpu_ms_per_window']:.2f} ms per "
           f"window at {at_top['streams']} streams" if top != single else "") + ".",
        "", "## Transport floor: a gRPC echo server (same message sizes, same client)", "",
        "| streams | messages/s | p50 ms | p99 ms | server CPU ms/msg | client CPU ms/msg |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for e in echo:
        lo, hi = e["p99_ms_range"]
        lines.append(f"| {e['streams']} | {e['messages_per_s']:.0f} | {e['p50_ms']:.2f} "
                     f"| {e['p99_ms']:.1f} [{lo:.0f}-{hi:.0f}] "
                     f"| {e['server_cpu_ms_per_message']:.3f} "
                     f"| {e['client_cpu_ms_per_message']:.3f} |")
    ff = report["ffmpeg"]
    lines += ["", f"ffmpeg decode of the same files to 22050 Hz mono: {ff['x_realtime']:.0f}x "
              "real time (one process per file, serial, wall clock)."]
    if models:
        lines.append(
            f"Model only, whole song, batch 1, 1 thread, in-process: ours "
            f"{models['ours_x_realtime']:.0f}x real time, the peer (MECOMP "
            f"audio_embedding_model.onnx) {models['peer_x_realtime']:.0f}x: ours is "
            f"{models['ours_over_peer']:.2f}x the peer's speed.")
    baseline = report.get("baseline")
    if baseline:
        lines += ["", f"## Before and after: {baseline['label']}", "",
                  f"An earlier run (load {baseline['load_before']:.1f} then; "
                  f"{report['load_before']:.1f} for this run; its settings are in its label). "
                  "Closed loop, medians, rows matched by replicas and streams (a baseline "
                  "without replicas served one):", "",
                  "| replicas | streams | p50 ms before / after | p99 ms before / after "
                  "| x real time before / after | server CPU ms/window before / after |",
                  "|---:|---:|---:|---:|---:|---:|"]
        before = {(replicas_of(r), r["streams"]): r for r in baseline["levels"]}
        for r in levels:
            b0 = before.get((replicas_of(r), r["streams"]))
            if b0 is None:
                continue
            lines.append(
                f"| {replicas_of(r)} | {r['streams']} "
                f"| {b0['p50_ms']:.1f} / {r['p50_ms']:.1f} "
                f"| {b0['p99_ms']:.0f} / {r['p99_ms']:.0f} "
                f"| {b0['x_realtime']:.0f} / {r['x_realtime']:.0f} "
                f"| {b0['server_cpu_ms_per_window']:.2f} / {r['server_cpu_ms_per_window']:.2f} |")
    gpu_levels = report.get("gpu_levels")
    if gpu_levels:
        lines += ["", f"## GPU: one replica on {report['provider']}, closed loop", "",
                  *CLOSED_HEADER, *(closed_row(r, peer_x) for r in gpu_levels)]
    lines += ["", target_summary(report), ""]
    if not gpu_levels:
        lines.append(f"GPU (--gpu, {' and '.join(map(str, GPU_STREAMS))} streams): not "
                     "measured (no GPU on this machine).")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem


def log_run(run: dict[str, Any]) -> None:
    print(json.dumps(run), file=sys.stderr)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    files = music_files()
    songs = [decode(p, RATE) for p in files]
    load_before = load_average()
    env = {"SEGUE_EXECUTION_PROVIDER": "cuda" if args.gpu else "cpu"}
    levels: list[dict[str, Any]] = []
    paced: list[dict[str, Any]] = []
    transport: list[dict[str, Any]] = []
    gpu_levels: list[dict[str, Any]] | None = None
    model = provider = ""
    for count in args.replicas:
        servers = await start_replicas(count, env)
        try:
            if not model:
                async with open_channel(servers.target) as channel:
                    info = await embedder_pb2_grpc.EmbedderStub(channel).ModelInfo(
                        embedder_pb2.ModelInfoRequest())
                model, provider = f"{info.name} {info.version}", info.execution_provider
            for n in args.streams:
                runs = []
                for _ in range(args.repeats):
                    runs.append(await run_level(servers, n, songs, args.seconds))
                    log_run(runs[-1])
                levels.append(median_of(runs))
            for x in args.paced:
                runs = []
                for _ in range(args.repeats):
                    runs.append(await run_level(servers, TARGET_STREAMS, songs, args.seconds,
                                                paced_x=x))
                    log_run(runs[-1])
                paced.append(median_of(runs))
            if args.gpu:
                gpu_levels = []
                for n in GPU_STREAMS:
                    runs = []
                    for _ in range(args.repeats):
                        runs.append(await run_level(servers, n, songs, args.seconds))
                        log_run(runs[-1])
                    gpu_levels.append(median_of(runs))
        finally:
            servers.stop()
    echo_port = free_ports(1)[0]
    echo = start_echo_server(echo_port)
    try:
        await wait_ready(f"127.0.0.1:{echo_port}")
        for n in args.streams:
            runs = []
            for _ in range(args.repeats):
                runs.append(await run_echo_level(f"127.0.0.1:{echo_port}", n, args.seconds,
                                                 server_pid=echo.pid))
                log_run(runs[-1])
            transport.append(median_of(runs))
    finally:
        stop_processes([echo])
    return {
        "date": dt.date.today().isoformat() if args.date is None else args.date,
        "machine": machine(),
        "note": args.note,
        "niceness": os.nice(0),
        "load_before": load_before,
        "model": model,
        "provider": provider,
        "cpu_count": os.cpu_count(),
        "gpu": args.gpu,
        "replicas": args.replicas,
        "audio": f"{len(files)} files from {_shown(files[0].parent)}",
        "seconds_per_stream": args.seconds,
        "repeats": args.repeats,
        "levels": levels,
        "paced": paced,
        "transport": transport,
        "gpu_levels": gpu_levels,
        # Stream 0's audio: the same kind and length as every served stream.
        "breakdown": breakdown(stream_audio(songs, 0, args.seconds)),
        "ffmpeg": ffmpeg_speed(files),
        "models": model_speeds(songs),
        "load_after": load_average(),
    }


def main() -> int:
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
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="JSON of an earlier run (e.g. of the previous code) to compare with")
    parser.add_argument("--baseline-label", default="previous code",
                        help="what the baseline run measured")
    parser.add_argument("--echo-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server is not None:
        asyncio.run(serve_echo(args.echo_server))
        return 0
    if args.gpu:
        # One GPU, one server: more processes would only share the device.
        if args.replicas not in (None, [1]):
            parser.error("--gpu serves one replica; leave out --replicas")
        args.replicas = [1]
    else:
        args.replicas = sorted(set(args.replicas or [1, os.cpu_count() or 1]))
    if min(args.replicas) < 1 or args.seconds < 1 or args.repeats < 1:
        parser.error("--replicas, --seconds and --repeats must be at least 1")
    report = asyncio.run(bench(args))
    if args.baseline is not None:
        baseline = json.loads(args.baseline.read_text())
        report["baseline"] = {"label": args.baseline_label, "levels": baseline["levels"],
                              "load_before": baseline["load_before"],
                              "breakdown": baseline["breakdown"]}
    stem = write_report(report, args.out)
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
