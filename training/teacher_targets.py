"""The distillation targets: musicnn's outputs along every training track, built once.

    python -m training.teacher_targets          # `make teacher-cache` (needs `make teacher-env`)

Runs training/teacher.py in its own environment over the training side of
training.catalog.split() (held-out tracks and sources are never given to the teacher either)
and keeps one data/teacher/<track cache name>.npz per track: per musicnn patch (2.992 s, no
overlap) the penultimate layer [patches, 200] and the tag probabilities [patches, 50] of the
MTT and MSD models. Training reads them with TeacherTargets and never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.catalog import Track, load_catalog, split
from training.teacher_cache import ROOT, TEACHER_PYTHON, run_teacher

# One musicnn patch: 187 mel frames of 256 samples at 16 kHz (seconds).
PATCH_S = 187 * 256 / 16000
DEFAULT_DIR = ROOT / "data" / "teacher"


def build(tracks: list[Track], cache: Path, out: Path, python: Path = TEACHER_PYTHON) -> list[Path]:
    """Computes the targets of every track not yet in out; returns every track's file."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{Path(t.cache).stem}.npz" for t in tracks]
    todo = [t for t, f in zip(tracks, files, strict=True) if not f.exists()]
    if todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
            listing.write("".join(f"{cache / t.cache}\t{Path(t.cache).stem}\n" for t in todo))
            listing.flush()
            run_teacher(python, ["tracks", listing.name, str(out)], progress=True)
    return files


class TeacherTargets:
    """musicnn's outputs for spans of training tracks, read from the built cache."""

    def __init__(self, tracks: list[Track], folder: Path, model: str) -> None:
        self.model = model
        self.pen: dict[str, NDArray[np.float32]] = {}
        self.tags: dict[str, NDArray[np.float32]] = {}
        for t in tracks:
            with np.load(folder / f"{Path(t.cache).stem}.npz") as f:
                self.pen[t.id] = f[f"{model}/penultimate"]
                self.tags[t.id] = f[f"{model}/taggram"]

    def span(self, track_id: str, start_s: float, end_s: float) -> tuple[NDArray[np.float32], ...]:
        """(mean penultimate [200], mean tag probabilities [50]) of the patches whose centre
        lies in [start_s, end_s) seconds of the track (the nearest patch if none does)."""
        pen, tags = self.pen[track_id], self.tags[track_id]
        centres = (np.arange(len(pen)) + 0.5) * PATCH_S
        inside = (centres >= start_s) & (centres < end_s)
        if not inside.any():
            inside = np.arange(len(pen)) == np.abs(centres - (start_s + end_s) / 2).argmin()
        return pen[inside].mean(0), tags[inside].mean(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    a = p.parse_args()
    train_tracks, _ = split(load_catalog(a.data / "catalog.json"))
    start = time.monotonic()
    build(train_tracks, a.data / "cache", a.out)
    hours = sum(t.seconds for t in train_tracks) / 3600
    print(
        f"teacher targets: {len(train_tracks)} tracks ({hours:.2f} h) in {a.out}, "
        f"{time.monotonic() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
