"""Peak memory of one large request to the mixer, at its default limits (issue 18).

    .venv/bin/python bench/bench_request_memory.py                  # the default limits
    .venv/bin/python bench/bench_request_memory.py --mix-s 600      # a smaller RenderMix

A mixer process runs alone (`devkit.localstack`, default settings). Each case sends one
request, alone, and the process tree's RSS (the mixer with its children) is sampled every
0.1 s from before the request until its answer has been read; the figure is the peak above the
idle process, the worst of `--repeats` runs (allocation varies from run to run). Cases:

- RenderTransition of two excerpts of SEGUE_MIXER_MAX_EXCERPT_S each (the largest accepted),
  sent as Opus and as 16-bit WAV (the bytes held until decoded);
- RenderMix of songs of 5 minutes adding up to `--mix-s` (default: SEGUE_MIXER_MAX_MIX_S,
  the largest accepted), and of half that, for the cost per second of mix.

The audio is the bundled real tracks, looped by ffmpeg to length and sent as Opus (a small
upload, as a client would send) unless said otherwise. Target: each request's peak < 1 GB
(1024 MiB) above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from bench.process_memory import tree_rss_mb  # noqa: E402
from devkit.localstack import running_stack  # noqa: E402
from segue.client.mixer import Excerpt, MixerClient, MixSong  # noqa: E402
from segue.music import bundled_tracks_dir  # noqa: E402
from services.mixer.config import MixerConfig  # noqa: E402

TARGET_MB = 1024.0
SONG_S = 300.0  # each mix song's length
SAMPLE_S = 0.1


@dataclass
class Case:
    name: str
    audio_s: float  # seconds of audio the request sends, all parts together
    idle_mb: float
    peak_mb: float
    seconds: float
    outcome: str

    @property
    def above_idle_mb(self) -> float:
        return self.peak_mb - self.idle_mb


def looped_opus(source: Path, seconds: float, out: Path) -> Path:
    """`source` looped to `seconds` s at `out`: 96 kb/s Opus, or 16-bit WAV for a .wav."""
    codec = ["-c:a", "pcm_s16le"] if out.suffix == ".wav" else ["-c:a", "libopus", "-b:a", "96k"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source),
                    "-t", f"{seconds:.3f}", *codec, str(out)], check=True)
    return out


def measure(name: str, audio_s: float, proc: psutil.Process,
            call: Callable[[], Coroutine[Any, Any, None]]) -> Case:
    """Runs `call` alone while sampling the tree's RSS; the peak and the outcome."""
    time.sleep(2.0)  # let the idle process settle
    idle = tree_rss_mb(proc)
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            peak[0] = max(peak[0], tree_rss_mb(proc))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        asyncio.run(call())
        outcome = "OK"
    except Exception as e:  # the outcome is reported, whatever it is
        outcome = f"{type(e).__name__}: {str(e)[:160]}"
    finally:
        stop.set()
        sampler.join()
    case = Case(name, audio_s, idle, peak[0], time.perf_counter() - started, outcome)
    print(f"{name}: peak {case.above_idle_mb:.0f} MiB above idle ({case.seconds:.0f} s, "
          f"{outcome})", flush=True)
    return case


def transition_case(address: str, proc: psutil.Process, folder: Path, tracks: list[Path],
                    excerpt_s: float, suffix: str = ".opus") -> Case:
    a = looped_opus(tracks[0], excerpt_s, folder / f"a{suffix}")
    b = looped_opus(tracks[1], excerpt_s, folder / f"b{suffix}")

    async def call() -> None:
        async with MixerClient(address, timeout_s=3600) as mixer:
            await mixer.render_transition(Excerpt.from_file(a), Excerpt.from_file(b),
                                          output_format="mp3")

    name = f"RenderTransition, 2 x {excerpt_s:.0f} s of {suffix[1:].upper()}"
    return measure(name, 2 * excerpt_s, proc, call)


def mix_case(address: str, proc: psutil.Process, folder: Path, tracks: list[Path],
             mix_s: float) -> Case:
    count = max(2, round(mix_s / SONG_S))
    song_s = mix_s / count
    paths = [looped_opus(tracks[i % len(tracks)], song_s, folder / f"mix-{i}.opus")
             for i in range(count)]

    async def call() -> None:
        async with MixerClient(address, timeout_s=3600) as mixer:
            await mixer.render_mix([MixSong.from_file(p) for p in paths], output_format="mp3")

    return measure(f"RenderMix, {count} x {song_s:.0f} s", mix_s, proc, call)


def run(args: argparse.Namespace) -> list[Case]:
    limits = MixerConfig()
    tracks = sorted(bundled_tracks_dir().rglob("*.opus"))
    mix_s = args.mix_s or limits.max_mix_s
    with tempfile.TemporaryDirectory() as tmp, \
            running_stack(Path(tmp), services=("mixer",)) as stack:
        proc = psutil.Process(stack.replicas["mixer"][0].pid)
        address = stack.grpc["mixer"]
        folder = Path(tmp)
        runs: list[list[Case]] = []
        for _ in range(args.repeats):
            cases = [transition_case(address, proc, folder, tracks, limits.max_excerpt_s, sfx)
                     for sfx in (".opus", ".wav")]
            for seconds in (mix_s / 2, mix_s):
                cases.append(mix_case(address, proc, folder, tracks, seconds))
            runs.append(cases)
    # Each case's worst repeat (allocation and sampling vary from run to run).
    return [max(same, key=lambda c: c.above_idle_mb) for same in zip(*runs, strict=True)]


def report(cases: list[Case], run_info: rep.RunInfo, args: argparse.Namespace
           ) -> tuple[str, dict[str, Any]]:
    limits = MixerConfig()
    rows = [[c.name, f"{c.audio_s:.0f}", f"{c.idle_mb:.0f}", f"{c.peak_mb:.0f}",
             f"{c.above_idle_mb:.0f}", f"{c.seconds:.0f}", c.outcome] for c in cases]
    mixes = [c for c in cases if c.name.startswith("RenderMix") and c.outcome == "OK"]
    slope = ((mixes[-1].above_idle_mb - mixes[0].above_idle_mb)
             / (mixes[-1].audio_s - mixes[0].audio_s) if len(mixes) == 2 else None)
    passed = all(c.outcome == "OK" and c.above_idle_mb < TARGET_MB for c in cases)
    lines = [
        *rep.header("Peak memory of one large mixer request at the default limits", run_info),
        f"Default limits: SEGUE_MIXER_MAX_EXCERPT_S {limits.max_excerpt_s:.0f} s, "
        f"SEGUE_MIXER_MAX_MIX_S {limits.max_mix_s:.0f} s, SEGUE_MIXER_MAX_EXCERPT_BYTES "
        f"{limits.max_excerpt_bytes / 2**20:.0f} MiB, SEGUE_MIXER_MAX_MIX_BYTES "
        f"{limits.max_mix_bytes / 2**20:.0f} MiB. Each case {args.repeats} times, its worst "
        "shown; one request at a time to a mixer "
        f"process alone; RSS of the process and its children sampled every {SAMPLE_S} s.",
        "",
        f"Acceptance (peak < {TARGET_MB:.0f} MiB above idle, every case): "
        f"{'PASSED' if passed else 'FAILED'}",
        "",
        *rep.table(["request", "audio s", "idle MiB", "peak MiB", "above idle MiB", "time s",
                    "outcome"], rows),
    ]
    if slope is not None:
        lines += ["", f"RenderMix costs {slope:.3f} MiB per second of mix "
                  f"({slope * 3600:.0f} MiB per hour) between the two mix cases."]
    data = {**run_info.as_dict(),
            "cases": [c.__dict__ | {"above_idle_mb": c.above_idle_mb} for c in cases],
            "mix_mib_per_s": slope, "passed": passed, "target_mib": TARGET_MB}
    return "\n".join(lines) + "\n", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--mix-s", type=float, default=0.0,
                        help="seconds of the largest RenderMix (default: the mixer's limit)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times each case runs; the table shows its worst")
    parser.add_argument("--date", help="the results file's date (default today)")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    args = parser.parse_args()
    run_info = rep.capture_run(args.date)
    text, data = report(run(args), run_info, args)
    print(text)
    rep.write_results(rep.results_stem(args.out, "request_memory", run_info.date), text, data)


if __name__ == "__main__":
    main()
