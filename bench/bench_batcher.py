"""Sequence batcher speed: concurrent streams' steps through one worker, in times real time.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_batcher.py [--streams 1 3 8]
        [--seconds 4] [--delay 5] [--repeats 3]

Each of N streams runs its windows of a packaged real song (`--seconds` 1 s windows, the
stream's steps one after another) through one `Batcher` with a `--delay` s batching delay,
as tests/test_embedder_batcher.py does, on the real model (CPU, one thread). Prints, per
stream count, the best wall-clock time over the repeats, the audio seconds processed per
second (times real time), the model runs and their mean batch, and whether the run took
longer than the delay (which a free worker should never wait out while every stream has
its step queued). Prints only: nothing is asserted or written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt
from immich_memories_music import tracks_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # services/ is not installed

from segue.audio import decode
from segue.embedding.model import ModelOutputs, StreamModel
from services.embedder.batcher import Batcher

F32 = npt.NDArray[np.float32]
MODEL = Path(__file__).resolve().parent.parent / "models" / "segue_stream.onnx"


class CountingModel(StreamModel):
    """The real model, noting the batch size of every run."""

    def __init__(self, model: StreamModel) -> None:
        self.spec = model.spec
        self.model = model
        self.runs: list[int] = []

    def run(self, pcm: F32, state: F32) -> ModelOutputs:
        self.runs.append(pcm.shape[0])
        return self.model.run(pcm, state)


async def run_streams(model: StreamModel, windows: list[F32], streams: int, delay_s: float) -> None:
    """Every stream runs all `windows` in order, carrying its recurrent state."""
    batcher = Batcher(model, max_size=64, max_delay_s=delay_s)

    async def one() -> None:
        state = np.zeros(model.spec.state_dim, np.float32)

        def prepare(index: int) -> tuple[F32, F32]:
            return windows[index], state

        def after(index: int, out: ModelOutputs) -> int:
            nonlocal state
            state = out.state[0].copy()
            return index

        async for _ in batcher.stream(range(len(windows)), prepare, after):
            pass

    try:
        await asyncio.gather(*(one() for _ in range(streams)))
    finally:
        await batcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--seconds", type=int, default=4, help="windows per stream")
    parser.add_argument("--delay", type=float, default=5.0, help="batching delay (s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = StreamModel(MODEL, provider="cpu", intra_threads=1)
    tracks = sorted(Path(tracks_dir()).rglob("*.opus"))
    rate = model.spec.sample_rate_hz
    audio = decode(tracks[len(tracks) // 2], rate)
    size = model.spec.window_samples
    windows = [audio[i * size : (i + 1) * size] for i in range(args.seconds)]
    audio_s = args.seconds * size / rate
    asyncio.run(run_streams(model, windows, 1, args.delay))  # sessions and caches warmed
    print(f"{'streams':>7s} {'wall ms':>8s} {'x real':>7s} {'runs':>5s} {'batch':>6s}  waited")
    for streams in args.streams:
        best = float("inf")
        counting = CountingModel(model)
        for _ in range(args.repeats):
            counting.runs.clear()
            start = time.perf_counter()
            asyncio.run(run_streams(counting, windows, streams, args.delay))
            best = min(best, time.perf_counter() - start)
        batch = statistics.mean(counting.runs)
        waited = "yes" if best >= args.delay else "no"
        print(
            f"{streams:7d} {best * 1e3:8.1f} {streams * audio_s / best:7.0f}"
            f" {len(counting.runs):5d} {batch:6.1f}  {waited}"
        )


if __name__ == "__main__":
    main()
