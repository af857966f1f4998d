"""What a client's sample rate costs the embedder: the streaming resampler alone, and the
server's CPU per second of audio, for clients at 22050 Hz (the model's rate, no resampling)
and at the rates music apps send (44.1 and 48 kHz, and others of `--rates`).

- Resampler: `segue.resample.StreamingResampler` fed 1 s chunks of real music in this
  process; CPU ms per second of audio (median of `--repeats`).
- Server (each client format, 16-bit stereo at 44.1 kHz included: what a music app sends): one
  embedder (`python -m services.embedder`, started by devkit.localstack) serving
  `--streams` concurrent SDK streams over loopback gRPC, each `--seconds` of real music in 1 s
  chunks as fast as the server takes them; the server's CPU ms per second of audio (median
  of `--repeats`).

    nice .venv/bin/python bench/bench_client_rates.py [--rates 22050 44100 48000 96000]
        [--baseline OLD.json --baseline-label "previous code"]

`--baseline` adds the figures of an earlier run (this script's JSON, e.g. from a checkout of
older code) beside this run's. Writes bench/results/client_rates_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from bench.bench_embedder import process_cpu_s  # noqa: E402
from devkit.localstack import running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.client import EmbedderClient  # noqa: E402
from segue.client.embedder import chunk_audio, f32_mono_format  # noqa: E402
from segue.music import find_music  # noqa: E402
from segue.resample import StreamingResampler  # noqa: E402
from segue.v1.common_pb2 import SAMPLE_FORMAT_S16LE, AudioFormat  # noqa: E402

MODEL_RATE = 22050
FloatArray = npt.NDArray[np.float32]


def music(rate: int, seconds: float, channels: int = 1) -> FloatArray:
    """`seconds` of real music at `rate` Hz, [frames] or [frames, channels] (the fetched
    corpus, else the bundled tracks)."""
    files = sorted((REPO / "data" / "audio").rglob("*.ogg")) or find_music()
    parts: list[FloatArray] = []
    total = 0
    for path in files:
        parts.append(decode(path, rate, channels).astype(np.float32))
        total += len(parts[-1])
        if total >= seconds * rate:
            break
    if total < seconds * rate:  # too little music (the bundled tracks only): cycle it
        parts = parts * (int(seconds * rate) // max(total, 1) + 1)
    return np.concatenate(parts)[: int(seconds * rate)]


def s16_chunks(frames: FloatArray, rate: int) -> list[bytes]:
    """Interleaved 16-bit PCM in 1 s chunks, as a music app sends a decoded stereo file."""
    ints = np.clip(np.round(frames * 32768.0), -32768, 32767).astype("<i2")
    return [ints[i : i + rate].tobytes() for i in range(0, len(ints), rate)]


def resampler_ms_per_s(audio: FloatArray, rate: int, repeats: int) -> float:
    """CPU ms per second of audio of the streaming resampler fed 1 s chunks."""
    runs = []
    for _ in range(repeats):
        resampler = StreamingResampler(rate, MODEL_RATE)
        start = time.process_time()
        for i in range(0, audio.size, rate):
            resampler.push(audio[i : i + rate])
        resampler.finish()
        runs.append(time.process_time() - start)
    return 1000 * statistics.median(runs) / (audio.size / rate)


async def serve_streams(address: str, chunks: list[bytes], fmt: AudioFormat,
                        streams: int) -> None:
    async with EmbedderClient(address) as client:
        await asyncio.gather(*(client.analyze_pcm(f"s{i}", fmt, chunks)
                               for i in range(streams)))


def server_ms_per_s(chunks: list[bytes], fmt: AudioFormat, audio_s: float, streams: int,
                    repeats: int, work: Path) -> float:
    """The server's CPU ms per second of audio served, median of `repeats` rounds."""
    env = {"SEGUE_EXECUTION_PROVIDER": "cpu"}
    runs = []
    with running_stack(work / f"{fmt.sample_rate_hz}-{fmt.channels}", env=env,
                       services=["embedder"]) as stack:
        pid, address = stack.replicas["embedder"][0].pid, stack.grpc["embedder"]
        asyncio.run(serve_streams(address, chunks[:10], fmt, streams))  # warm-up
        for _ in range(repeats):
            before = process_cpu_s(pid)
            asyncio.run(serve_streams(address, chunks, fmt, streams))
            runs.append(process_cpu_s(pid) - before)
    return 1000 * statistics.median(runs) / (streams * audio_s)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Per client format: the resampler's and the server's CPU ms per second of audio."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            audio = music(rate, args.seconds)
            out[str(rate)] = {
                "resampler_ms_per_audio_s": round(
                    resampler_ms_per_s(audio, rate, args.repeats), 3),
                "server_ms_per_audio_s": round(server_ms_per_s(
                    chunk_audio(audio, rate, 1.0), f32_mono_format(rate), args.seconds,
                    args.streams, args.repeats, Path(tmp)), 3),
            }
            print(rate, out[str(rate)], flush=True)
        if args.stereo_s16_rate:
            rate = args.stereo_s16_rate
            fmt = AudioFormat(sample_rate_hz=rate, channels=2, sample_format=SAMPLE_FORMAT_S16LE)
            chunks = s16_chunks(music(rate, args.seconds, channels=2), rate)
            out[f"{rate} s16 stereo"] = {"server_ms_per_audio_s": round(server_ms_per_s(
                chunks, fmt, args.seconds, args.streams, args.repeats, Path(tmp)), 3)}
            print(out, flush=True)
    return out


def markdown(run: rep.RunInfo, args: argparse.Namespace, results: dict[str, Any],
             baseline: dict[str, Any] | None) -> str:
    notes = ["", f"{args.streams} concurrent streams of {args.seconds:g} s of real music per "
             "row, mono float32 (or 16-bit stereo, as a music app sends a decoded file) in 1 s "
             f"chunks; medians of {args.repeats} rounds. "
             "Server CPU per second of audio includes everything (gRPC, resampling, model, "
             "structure, checkpoints)."]
    if baseline:
        notes.append(f"Baseline ({args.baseline_label}): `{args.baseline}`, run "
                     f"{baseline['run']['started_utc']} on the same machine.")
    lines = rep.header("Client sample rates: what resampling costs the embedder", run, notes)
    reference = results[str(MODEL_RATE)]["server_ms_per_audio_s"] if str(
        MODEL_RATE) in results else None
    columns = ["client Hz", "resampler ms / audio s", "server CPU ms / audio s",
               f"x the {MODEL_RATE} Hz stream"]
    if baseline:
        columns += [f"resampler, {args.baseline_label}", f"server, {args.baseline_label}"]
    rows = []
    for rate, r in results.items():
        row: list[object] = [rate, r.get("resampler_ms_per_audio_s", "-"),
                             r["server_ms_per_audio_s"],
                             rep.ratio(r["server_ms_per_audio_s"], reference)]
        if baseline:
            old = baseline["results"].get(rate, {})
            row += [old.get("resampler_ms_per_audio_s", "-"), old.get("server_ms_per_audio_s", "-")]
        rows.append(row)
    lines += rep.table(columns, rows, "l" + "r" * (len(columns) - 1))
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", type=int, nargs="+", default=[22050, 44100, 48000, 96000])
    p.add_argument("--stereo-s16-rate", type=int, default=44100,
                   help="also serve 16-bit stereo at this rate (0: not)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", type=Path, default=None)
    p.add_argument("--baseline-label", default="previous code")
    p.add_argument("--date", default=None)
    p.add_argument("--out", type=Path, default=rep.RESULTS)
    args = p.parse_args()
    run = rep.capture_run(args.date)
    results = measure(args)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    text = markdown(run, args, results, baseline)
    md, _ = rep.write_results(rep.results_stem(args.out, "client_rates", run.date), text,
                              {"run": run.as_dict(), "results": results})
    print(text)
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
