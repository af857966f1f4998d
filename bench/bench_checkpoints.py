"""Checkpoints of long streams: resume-token bytes, spacing and server CPU, with and without
the embedder's token budget (SEGUE_CHECKPOINT_BYTES_PER_S).

Each checkpoint carries the stream's whole state, which grows with the song, so at a fixed
interval a stream's token bytes grow with the square of its length. For each stream length
(`--minutes`, default 3, 10 and 30), each client sample rate (`--rates`, default 22050, the
model's, and 44100, which the server resamples: each token then also holds up to a window of
resampled audio not yet analysed) and each budget (`--budgets`, default 0 = off, the old
behaviour, and the server default), one embedder (`python -m services.embedder`, started by
devkit.localstack) serves one stream through the SDK over loopback gRPC: real music (the
fetched corpus, else the bundled tracks) one song after another, mono float32 in 4 s chunks,
checkpoints asked every 5 s (the default), no window messages. Reported per run:
checkpoints, token bytes in all and per second of audio, the largest token, the longest gap
between checkpoints (the audio a client must keep for a resume), and the server's CPU seconds
per minute of audio. A last check resumes the longest budgeted stream from its last
checkpoint and compares the analysis with the uninterrupted one. Each server first serves a
10 s warm-up stream, outside the figures.

    nice .venv/bin/python bench/bench_checkpoints.py [--minutes 3 10 30] [--budgets 0 32768]

Writes bench/results/checkpoints_<date>.md and .json (`--out` another folder).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from bench.bench_client_rates import music  # noqa: E402
from bench.bench_embedder import own_cpu_s, process_cpu_s  # noqa: E402
from devkit.localstack import running_stack  # noqa: E402
from segue.client import EmbedderClient  # noqa: E402
from segue.client.embedder import AnalyzeResult, chunk_audio, f32_mono_format  # noqa: E402

CHUNK_S = 4.0
INTERVAL_S = 5.0
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Run:
    rate_hz: int
    minutes: float
    budget_bytes_per_s: float
    checkpoints: int
    token_mb: float
    token_bytes_per_audio_s: float
    largest_token_kb: float
    longest_gap_s: float
    server_cpu_s_per_audio_min: float
    client_cpu_s_per_audio_min: float
    wall_s: float


async def stream(address: str, audio: FloatArray, rate: int, song_id: str,
                 resume_token: bytes = b"") -> AnalyzeResult:
    async with EmbedderClient(address) as client:
        return await client.analyze_pcm(
            song_id, f32_mono_format(rate), chunk_audio(audio, rate, CHUNK_S),
            resume_token=resume_token, stream_windows=False,
            checkpoint_interval_s=INTERVAL_S)


def server_env(budget: float) -> dict[str, str]:
    """The embedder's settings for a run under `budget` (0: off); songs up to 2 hours."""
    return {"SEGUE_CHECKPOINT_BYTES_PER_S": str(budget), "SEGUE_MAX_SONG_S": "7200",
            "SEGUE_EXECUTION_PROVIDER": "cpu"}


def measure(budget: float, audio: FloatArray, rate: int, work: Path, repeats: int) -> Run:
    """`repeats` streams of `audio` (at `rate` Hz) under `budget` on one server: token
    figures (the same every time), and the median CPU and wall time."""
    minutes = audio.size / rate / 60
    with running_stack(work / f"{rate}-{minutes}-{budget}", env=server_env(budget),
                       services=["embedder"]) as stack:
        replica, address = stack.replicas["embedder"][0], stack.grpc["embedder"]
        asyncio.run(stream(address, audio[: 10 * rate], rate, "warm-up"))  # first-run set-up
        times = []
        for _ in range(repeats):
            cpu0, own0, t0 = process_cpu_s(replica.pid), own_cpu_s(), time.perf_counter()
            result = asyncio.run(stream(address, audio, rate, "long"))
            times.append((process_cpu_s(replica.pid) - cpu0, own_cpu_s() - own0,
                          time.perf_counter() - t0))
    cpu, client, wall = (float(np.median(column)) for column in zip(*times, strict=True))
    sizes = [len(c.resume_token) for c in result.checkpoints]
    positions = [0.0] + [c.position_s for c in result.checkpoints] + [audio.size / rate]
    return Run(
        rate_hz=rate, minutes=round(minutes, 1), budget_bytes_per_s=budget, checkpoints=len(sizes),
        token_mb=round(sum(sizes) / 1e6, 2),
        token_bytes_per_audio_s=round(sum(sizes) / (audio.size / rate)),
        largest_token_kb=round(max(sizes, default=0) / 1e3, 1),
        longest_gap_s=round(float(np.max(np.diff(positions))), 1),
        server_cpu_s_per_audio_min=round(cpu / minutes, 3),
        client_cpu_s_per_audio_min=round(client / minutes, 3),
        wall_s=round(wall, 1),
    )


def resume_check(audio: FloatArray, rate: int, budget: float, work: Path) -> dict[str, object]:
    """Resumes a budgeted stream from its last checkpoint: the same analysis?"""
    with running_stack(work / "resume", env=server_env(budget),
                       services=["embedder"]) as stack:
        address = stack.grpc["embedder"]
        full = asyncio.run(stream(address, audio, rate, "resume"))
        last = full.checkpoints[-1]
        rest = audio[last.position_frames:]
        resumed = asyncio.run(stream(address, rest, rate, "resume", last.resume_token))
    a, b = full.analysis, resumed.analysis
    return {
        "resumed_at_s": last.position_s,
        "feel_max_abs_diff": float(np.max(np.abs(np.subtract(a.feel, b.feel)))),
        "same_segments": len(a.segments) == len(b.segments),
        "loudness_diff_lu": abs(a.loudness_lufs - b.loudness_lufs),
        "same_beats": [t.time_s for t in a.beats] == [t.time_s for t in b.beats],
    }


def write(stem: Path, run: rep.RunInfo, runs: list[Run],
          resume: dict[str, object]) -> Path:
    rows = [[r.rate_hz, f"{r.minutes:g}",
             "off" if r.budget_bytes_per_s == 0 else f"{r.budget_bytes_per_s:g}",
             r.checkpoints, r.token_mb, r.token_bytes_per_audio_s, r.largest_token_kb,
             r.longest_gap_s, r.server_cpu_s_per_audio_min, r.client_cpu_s_per_audio_min,
             r.wall_s] for r in runs]
    notes = [
        "",
        "One stream per row through one embedder over loopback gRPC: real music, mono float32 "
        f"at the row's rate in {CHUNK_S:g} s chunks, checkpoints asked every {INTERVAL_S:g} s, no "
        "window messages; CPU and wall time are medians of --repeats streams. Budget: "
        "SEGUE_CHECKPOINT_BYTES_PER_S (token bytes per second of "
        "audio; off = checkpoints at the interval only, the behaviour before it).",
    ]
    lines = rep.header("Checkpoints of long streams: token bytes with and without the budget",
                       run, notes)
    lines += rep.table(["client Hz", "minutes", "budget B/s", "checkpoints", "token MB",
                        "token B / audio s", "largest token kB", "longest gap s",
                        "server CPU s / audio min", "client CPU s / audio min", "wall s"],
                       rows, "llrrrrrrrrr")
    lines += ["", f"Resumed from the last checkpoint of a budgeted {runs[-1].minutes:g}-minute "
              f"{runs[-1].rate_hz} Hz stream: {resume}."]
    md, _ = rep.write_results(stem, "\n".join(lines), {"run": run.as_dict(),
                              "runs": [asdict(r) for r in runs], "resume": resume})
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[3.0, 10.0, 30.0])
    p.add_argument("--rates", type=int, nargs="+", default=[22050, 44100])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.0, 32768.0])
    p.add_argument("--repeats", type=int, default=3, help="streams per row (CPU: median)")
    p.add_argument("--out", type=Path, default=rep.RESULTS)
    p.add_argument("--date", default=None)
    a = p.parse_args()
    run = rep.capture_run(a.date)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in a.rates:
            audio = music(rate, max(a.minutes) * 60)
            for minutes in a.minutes:
                for budget in a.budgets:
                    clip = audio[: int(minutes * 60 * rate)]
                    result = measure(budget, clip, rate, Path(tmp), a.repeats)
                    print(result, flush=True)
                    runs.append(result)
        resume = resume_check(audio, a.rates[-1], max(a.budgets), Path(tmp))
        print(resume, flush=True)
    md = write(rep.results_stem(a.out, "checkpoints", run.date), run, runs, resume)
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
