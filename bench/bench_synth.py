"""Test-song synthesis speed: how many times faster than real time devkit.synth renders.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_synth.py [--seconds 60] [--repeats 5]

Renders the same songs as the tests (seed 11, each instrumentation, 22050 and 44100 Hz) and
prints, per song, the best wall-clock and process CPU time over the repeats and the audio
seconds rendered per second of each. Prints only: the numbers depend on the machine and its
load, so nothing here is asserted or written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # devkit/ is not installed

from devkit.synth import INSTRUMENTATIONS, generate_song


def best_times_s(render: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best wall-clock s, best process CPU s) of `render()` over `repeats` runs."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        render()
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="song length (s)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generate_song(11, duration_s=4)  # imports and caches warmed
    print(
        f"{'song':32s} {'audio s':>8s} {'wall ms':>8s} {'x real':>7s} {'cpu ms':>8s} {'x real':>7s}"
    )
    for rate in (22050, 44100):
        for instrumentation in INSTRUMENTATIONS:
            song = generate_song(
                11, duration_s=args.seconds, sample_rate_hz=rate, instrumentation=instrumentation
            )
            wall, cpu = best_times_s(
                partial(
                    generate_song,
                    11,
                    duration_s=args.seconds,
                    sample_rate_hz=rate,
                    instrumentation=instrumentation,
                ),
                args.repeats,
            )
            name = f"seed 11, {instrumentation}, {rate} Hz"
            seconds = song.duration_s
            print(
                f"{name:32s} {seconds:8.1f} {wall * 1e3:8.1f} {seconds / wall:7.0f}"
                f" {cpu * 1e3:8.1f} {seconds / cpu:7.0f}"
            )


if __name__ == "__main__":
    main()
