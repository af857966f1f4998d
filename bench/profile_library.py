"""Where a library analysis spends its CPU: ffmpeg against each stage of the in-process engine.

Runs `segue.library.engine.LocalEngine` (the `segue analyze --local` worker) over fetched files
in this process, one file after another, and charges this thread's CPU time to the stage that
spent it: the ONNX model, the loudness meter (K-weighting filter), the structure features
(pushed window by window) and the final structure analysis; "other" is the rest (reading the
pipe, cutting windows, assembling the result). ffmpeg's CPU is its child-process time. The
issue-15 target (whole analysis >= 0.8x the decode-only rate) needs everything in-process to
cost at most a quarter of ffmpeg's time.

Run: python bench/profile_library.py [--files N] [--repeats R]   (needs `make data`)
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report as rep
from segue.embedding.loudness import LoudnessMeter
from segue.embedding.model import StreamModel
from segue.library import AUDIO_SUFFIXES
from segue.library.engine import LocalEngine
from segue.library.outcome import Done
from segue.library.sources import find_sources
from segue.native_threads import single_threaded_blas
from segue.structure.accumulator import StructureAccumulator

REPO = Path(__file__).resolve().parents[1]
# (class, method, stage) charged while the method runs.
STAGES: list[tuple[type, str, str]] = [
    (StreamModel, "run", "model"),
    (LoudnessMeter, "push", "loudness"),
    (StructureAccumulator, "push", "structure features"),
    (StructureAccumulator, "push_batch", "structure features"),
    (StructureAccumulator, "analyze", "structure analysis"),
]


@contextmanager
def charged(spent: defaultdict[str, float]) -> Iterator[None]:
    """Adds each stage's thread CPU seconds to `spent` while the block runs."""
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in STAGES]

    def timed(method: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[stage] += time.thread_time() - start

        return run

    for (cls, name, stage), (_, _, method) in zip(STAGES, originals, strict=True):
        setattr(cls, name, timed(method, stage))
    try:
        yield
    finally:
        for cls, name, method in originals:
            setattr(cls, name, method)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_pass(engine: LocalEngine, files: list[Path]) -> dict[str, float]:
    """CPU seconds per stage (and ffmpeg's, and the audio's length) over `files` once."""
    spent: defaultdict[str, float] = defaultdict(float)
    audio_s = 0.0
    sources = find_sources(files)
    ffmpeg0, total0 = children_cpu_s(), time.thread_time()
    with charged(spent):
        for source in sources:
            outcome = engine.analyze(source)
            if isinstance(outcome, Done):
                audio_s += outcome.audio_s
    in_process = time.thread_time() - total0
    row: dict[str, float] = {stage: spent[stage] for _, _, stage in STAGES}
    row["other"] = in_process - sum(spent.values())
    row["in-process total"] = in_process
    row["ffmpeg"] = children_cpu_s() - ffmpeg0
    row["audio_s"] = audio_s
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=15, help="files drawn (seeded) from data/")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the median is reported")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    parser.add_argument("--date", default=None)
    args = parser.parse_args()
    files = sorted(p for p in (REPO / "data" / "audio").rglob("*")
                   if p.suffix.lower() in AUDIO_SUFFIXES)  # fmt: skip
    if not files:
        print("no audio: run `make data` first")
        return 1
    random.Random(1).shuffle(files)
    files = files[: args.files]
    run = rep.capture_run(args.date)
    single_threaded_blas()  # as in a library worker
    engine = LocalEngine()
    engine.analyze(find_sources(files[:1])[0])  # warm-up: sessions and caches
    passes = [one_pass(engine, files) for _ in range(args.repeats)]
    keys = list(passes[0])
    median = {k: sorted(p[k] for p in passes)[len(passes) // 2] for k in keys}
    ffmpeg = median["ffmpeg"]
    rows = [[k, f"{median[k]:.2f}", f"{median[k] / ffmpeg:.2f}"] for k in keys if k != "audio_s"]
    notes = [f"{len(files)} files drawn (seed 1) from data/audio, {median['audio_s']:.0f} s of "
             "audio, one after another in one process (BLAS on one thread, as in a library "
             f"worker); median of {args.repeats} passes."]  # fmt: skip
    lines = rep.header("Library analysis: where the CPU goes", run, notes)
    lines += rep.table(["stage", "CPU s", "x ffmpeg"], rows, "lrr")
    lines += ["", f"In-process work costs {median['in-process total'] / ffmpeg:.2f}x ffmpeg's "
              "decoding; the issue-15 target (all cores at >= 0.8x the decode-only rate) "
              "needs at most 0.25x."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    data = {"run": run.as_dict(), "files": [str(f) for f in files], "passes": passes,
            "median": median}  # fmt: skip
    md, _ = rep.write_results(rep.results_stem(args.out, "library_profile", run.date), text, data)
    print(text)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
