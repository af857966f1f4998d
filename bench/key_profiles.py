"""Which key profiles to correlate the song's chroma with: each published set scored on the
rendered-MIDI set's tuning split (pieces with a checked key signature) and on the prompted
immich-memories-music recordings, with the shipped chroma (segue.structure.chroma).

The held-out split is scored only with `--heldout`, after a choice, so that the choice is not
made on it. Usage: python bench/key_profiles.py [--heldout]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import mir_eval
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import midi_set
from bench.eval_structure import _chroma_of, _recordings, prompt_labels
from segue.structure.camelot import key_name
from segue.structure.key import (
    KRUMHANSL_MAJOR,
    KRUMHANSL_MINOR,
    MAJOR_PROFILE,
    MINOR_PROFILE,
    key_scores,
    song_chroma,
)

F64 = npt.NDArray[np.float64]
# (major, minor) from the tonic upwards; Albrecht & Shanahan's is the shipped one.
PROFILES: dict[str, tuple[F64, F64]] = {
    "Albrecht-Shanahan 2013 (shipped)": (MAJOR_PROFILE, MINOR_PROFILE),
    "Krumhansl-Kessler 1982": (KRUMHANSL_MAJOR, KRUMHANSL_MINOR),
    "Temperley 1999": (
        np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0]),
        np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0]),
    ),
    "Bellman-Budge (Essentia's bgate)": (
        np.array([16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57]),
        np.array([18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21]),
    ),
    "Aarden-Essen": (
        np.array([17.77, 0.15, 14.93, 0.16, 19.80, 11.36, 0.29, 22.06, 0.15, 8.15, 0.23, 4.95]),
        np.array([18.26, 0.74, 14.05, 16.86, 0.70, 14.44, 0.70, 18.62, 4.57, 1.93, 7.38, 1.76]),
    ),
}


def labelled_chroma(split: str) -> Iterator[tuple[str, F64]]:
    """(true key, song chroma [12]) of each labelled item of `split`: "tuning" or "heldout"
    renderings, or "recordings" (the prompted keys of immich-memories-music)."""
    if split == "recordings":
        labels = prompt_labels()
        for name, audio in _recordings():
            if name in labels:
                yield labels[name][1], song_chroma(*_chroma_of(audio))
        return
    for piece in midi_set.load(split):
        if piece.key is not None:
            yield piece.key, song_chroma(*_chroma_of(piece.audio()))


def score(items: list[tuple[str, F64]], profile: tuple[F64, F64]) -> float:
    """Mean MIREX weighted key score of the best-correlated key."""

    def guess(chroma: F64) -> str:
        best = int(np.argmax(key_scores(chroma, *profile)))
        return key_name(best % 12, "major" if best < 12 else "minor")

    return float(np.mean([mir_eval.key.weighted_score(k, guess(c)) for k, c in items]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heldout", action="store_true", help="also score the held-out split")
    args = parser.parse_args()
    splits = ["tuning", "recordings"] + (["heldout"] if args.heldout else [])
    items = {split: list(labelled_chroma(split)) for split in splits}
    print("| profiles | " + " | ".join(f"{s} ({len(items[s])})" for s in splits) + " |")
    print("|---" * (len(splits) + 1) + "|")
    for name, profile in PROFILES.items():
        cells = [f"{score(items[s], profile):.3f}" for s in splits]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
