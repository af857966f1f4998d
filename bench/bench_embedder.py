"""Embedder benchmark: per-chunk latency and aggregate speed at 1-64 concurrent streams.

A real server (`python -m services.embedder`) runs as a subprocess; N concurrent clients on
loopback each stream songs in 1 s chunks, closed-loop (send a chunk, wait for its window), so
the latency is that of one chunk under N-way load and the throughput is what the server
sustains. For context it also measures, on the same audio: ffmpeg's decode speed (the physical
floor of any pipeline that starts from files) and the peer model (MECOMP's ONNX embedder,
offline whole-song, batch 1) when ../shared/peers has it.

    .venv/bin/python bench/bench_embedder.py [--streams 1 8 32 64] [--seconds 30] [--gpu]

Writes bench/results/embedder_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segue.audio import decode, mono_to_pcm  # noqa: E402
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc  # noqa: E402

FloatArray = npt.NDArray[np.float32]
RATE = 22050
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
SHARED = REPO.parent / "shared"
PEER = SHARED / "peers" / "mecomp_audio_embedding_model.onnx"


def music_files() -> list[Path]:
    shared = sorted((SHARED / "music" / "librosa").glob("*.ogg"))
    if shared:
        return shared
    from immich_memories_music import tracks_dir

    return sorted(Path(tracks_dir()).rglob("*.opus"))[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SEGUE_GRPC_HOST": "127.0.0.1", "SEGUE_GRPC_PORT": str(port),
           "SEGUE_METRICS_PORT": "0", "SEGUE_LOG_LEVEL": "warning", "SEGUE_MAX_SONG_S": "36000",
           "SEGUE_MAX_CONCURRENT_STREAMS": "2048", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env,
                            stderr=subprocess.DEVNULL)


async def one_stream(stub: Any, song_id: str, audio: FloatArray,
                     latencies: list[float]) -> float:
    """Streams `audio` in 1 s chunks, each sent after the previous one's window came back."""
    call = stub.Analyze()
    fmt = common_pb2.AudioFormat(sample_rate_hz=RATE, channels=1,
                                 sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
    await call.write(embedder_pb2.AnalyzeRequest(config=embedder_pb2.StreamConfig(
        song_id=song_id, format=fmt, checkpoint_interval_s=5.0)))
    chunks = [mono_to_pcm(audio[i : i + RATE], common_pb2.SAMPLE_FORMAT_F32LE)
              for i in range(0, audio.size - RATE + 1, RATE)]
    for pcm in chunks:
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
    return len(chunks) * 1.0


async def run_level(address: str, streams: int, songs: list[FloatArray],
                    seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    options = [("grpc.max_receive_message_length", 8 << 20)]
    # A few channels, like a few client processes, rather than one HTTP/2 connection.
    channels = [grpc.aio.insecure_channel(address, options=options)
                for _ in range(min(4, streams))]
    stubs = [embedder_pb2_grpc.EmbedderStub(c) for c in channels]
    length = int(seconds * RATE)
    clips = [songs[i % len(songs)][:length] for i in range(streams)]
    # Warm-up: one short stream per channel.
    await asyncio.gather(*(one_stream(s, "warm", songs[0][: RATE * 3], []) for s in stubs))
    started = time.perf_counter()
    audio_s = await asyncio.gather(*(one_stream(stubs[i % len(stubs)], f"s{i}", clip, latencies)
                                     for i, clip in enumerate(clips)))
    wall = time.perf_counter() - started
    for c in channels:
        await c.close(None)
    lat_ms = np.asarray(latencies) * 1000
    return {
        "streams": streams,
        "chunks": len(latencies),
        "audio_s": float(sum(audio_s)),
        "wall_s": wall,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "x_realtime": float(sum(audio_s) / wall),
    }


def ffmpeg_speed(files: list[Path]) -> dict[str, float]:
    times, audio_s = [], 0.0
    for path in files:
        started = time.perf_counter()
        audio = decode(path, RATE)
        times.append(time.perf_counter() - started)
        audio_s += audio.size / RATE
    return {"audio_s": audio_s, "wall_s": sum(times), "x_realtime": audio_s / sum(times)}


def peer_speed(songs: list[FloatArray]) -> dict[str, float] | None:
    if not PEER.is_file():
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(PEER), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: songs[0][None, : RATE * 3]})
    walls = []
    for song in songs:
        started = time.perf_counter()
        session.run(None, {name: song[None, :]})
        walls.append(time.perf_counter() - started)
    audio_s = sum(s.size for s in songs) / RATE
    return {"audio_s": audio_s, "wall_s": sum(walls), "x_realtime": audio_s / sum(walls)}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"embedder_{report['date']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    peer = report["peer"]
    lines = [
        f"# Embedder benchmark, {report['date']}",
        "",
        f"Machine: {report['machine']}. {report['note']}",
        f"Model: {report['model']} on {report['provider']}. Audio: {report['audio']}.",
        "Each stream sends 1 s chunks closed-loop (next chunk after the previous window came "
        "back); latency = chunk sent -> its window received, on loopback gRPC; the client runs "
        "on the same cores as the server.",
        "",
        "| streams | chunks | p50 ms | p99 ms | aggregate x real time |"
        + (" x peer |" if peer else ""),
        "|---:|---:|---:|---:|---:|" + ("---:|" if peer else ""),
    ]
    for r in report["levels"]:
        ratio = f" {r['x_realtime'] / peer['x_realtime']:.2f} |" if peer else ""
        lines.append(f"| {r['streams']} | {r['chunks']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['x_realtime']:.0f} |{ratio}")
    ff = report["ffmpeg"]
    lines += ["", f"ffmpeg decode of the same files to 22050 Hz mono: {ff['x_realtime']:.0f}x "
              "real time (one process per file, serial)."]
    if peer:
        lines.append(f"Peer (MECOMP audio_embedding_model.onnx, offline whole song, batch 1, "
                     f"1 thread, in-process, no gRPC): {peer['x_realtime']:.0f}x real time.")
    lines += ["", "Targets on the 2-core machine: p99 <= 10 ms per chunk at 32 streams; "
              ">= 1000x real time aggregate.", ""]
    if report.get("gpu_levels") is None:
        lines.append("GPU (--gpu, 256 and 1024 streams): not measured (no GPU on this machine).")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    files = music_files()
    songs = [decode(p, RATE) for p in files]
    port = free_port()
    env = {"SEGUE_EXECUTION_PROVIDER": "cuda" if args.gpu else "cpu"}
    proc = start_server(port, env)
    address = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            info = await embedder_pb2_grpc.EmbedderStub(channel).ModelInfo(
                embedder_pb2.ModelInfoRequest())
        levels = []
        for n in args.streams:
            result = await run_level(address, n, songs, args.seconds)
            print(json.dumps(result), file=sys.stderr)
            levels.append(result)
        gpu_levels = None
        if args.gpu:
            gpu_levels = [await run_level(address, n, songs, args.seconds) for n in (256, 1024)]
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "date": dt.date.today().isoformat() if args.date is None else args.date,
        "machine": machine(),
        "note": args.note,
        "model": f"{info.name} {info.version}",
        "provider": info.execution_provider,
        "audio": f"{len(files)} files from {files[0].parent}",
        "seconds_per_stream": args.seconds,
        "levels": levels,
        "gpu_levels": gpu_levels,
        "ffmpeg": ffmpeg_speed(files),
        "peer": peer_speed(songs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    parser.add_argument("--gpu", action="store_true",
                        help="serve on CUDA and add 256 and 1024 streams")
    parser.add_argument("--date", default=None, help="date in the report name (default today)")
    parser.add_argument("--note", default="Shared machine: other jobs ran at the same time, so "
                        "figures are noisy.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    report = asyncio.run(bench(args))
    stem = write_report(report, args.out)
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
