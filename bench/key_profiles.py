"""Which key profiles to correlate the song's chroma with: published sets, alone and averaged,
scored with the shipped chroma (segue.structure.chroma) on
- the rendered-MIDI set's tuning split (pieces with a checked key signature);
- the prompted immich-memories-music recordings;
- "shifts": the share of transposed copies (-2 and +3 semitones, bench/eval_transforms.py) of
  the real recordings whose key moves by the shift, mode kept.

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
from bench.eval_structure import prompt_labels, real_recordings
from bench.eval_transforms import EXCERPT_S, SEMITONES, SR, shift_pitch
from segue.structure.accumulator import audio_features
from segue.structure.camelot import KeyMode, key_name
from segue.structure.key import (
    BELLMAN_MAJOR,
    BELLMAN_MINOR,
    KRUMHANSL_MAJOR,
    KRUMHANSL_MINOR,
    MAJOR_PROFILE,
    MINOR_PROFILE,
    key_scores,
    song_chroma,
)

F64 = npt.NDArray[np.float64]
Profile = tuple[F64, F64]  # (major, minor) from the tonic upwards
ALBRECHT: Profile = (MAJOR_PROFILE, MINOR_PROFILE)
BELLMAN: Profile = (BELLMAN_MAJOR, BELLMAN_MINOR)
TEMPERLEY: Profile = (
    np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0]),
    np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0]),
)
AARDEN: Profile = (
    np.array([17.77, 0.15, 14.93, 0.16, 19.80, 11.36, 0.29, 22.06, 0.15, 8.15, 0.23, 4.95]),
    np.array([18.26, 0.74, 14.05, 16.86, 0.70, 14.44, 0.70, 18.62, 4.57, 1.93, 7.38, 1.76]),
)
# Each candidate: profiles whose correlations are averaged.
CANDIDATES: dict[str, tuple[Profile, ...]] = {
    "Albrecht-Shanahan 2013 + Bellman-Budge (shipped)": (ALBRECHT, BELLMAN),
    "Albrecht-Shanahan 2013": (ALBRECHT,),
    "Bellman-Budge (Essentia's bgate)": (BELLMAN,),
    "Krumhansl-Kessler 1982": ((KRUMHANSL_MAJOR, KRUMHANSL_MINOR),),
    "Temperley 1999": (TEMPERLEY,),
    "Aarden-Essen": (AARDEN,),
    "Albrecht-Shanahan + Temperley": (ALBRECHT, TEMPERLEY),
}


def guess(chroma: F64, profiles: tuple[Profile, ...]) -> tuple[int, KeyMode]:
    """(tonic pitch class, mode) with the best mean correlation."""
    scores = np.mean([key_scores(chroma, *p) for p in profiles], axis=0)
    best = int(np.argmax(scores))
    mode: KeyMode = "major" if best < 12 else "minor"
    return best % 12, mode


def chroma_of(audio: npt.NDArray[np.floating]) -> F64:
    """The song chroma the shipped key estimate reads from mono PCM at SR Hz."""
    features = audio_features(audio.astype(np.float32), SR)
    return song_chroma(features.chroma, features.level_db)


def labelled_chroma(split: str) -> Iterator[tuple[str, F64]]:
    """(true key, song chroma [12]) of each labelled item of `split`: "tuning" or "heldout"
    renderings, or "recordings" (the prompted keys of immich-memories-music)."""
    if split == "recordings":
        labels = prompt_labels()
        for name, audio in real_recordings():
            if name in labels:
                yield labels[name][1], chroma_of(audio)
        return
    for piece in midi_set.load(split):
        if piece.key is not None:
            yield piece.key, chroma_of(piece.audio())


def score(items: list[tuple[str, F64]], profiles: tuple[Profile, ...]) -> float:
    """Mean MIREX weighted key score of the best-correlated key."""
    return float(
        np.mean([mir_eval.key.weighted_score(k, key_name(*guess(c, profiles))) for k, c in items])
    )


def shifted_chroma() -> list[tuple[F64, list[tuple[int, F64]]]]:
    """Per real recording, its excerpt's song chroma and each transposed copy's."""
    out = []
    for _, audio in real_recordings():
        excerpt = audio[: int(EXCERPT_S * SR)].astype(np.float32)
        copies = [
            (steps, chroma_of(shift_pitch(excerpt, steps))) for steps in SEMITONES
        ]
        out.append((chroma_of(excerpt), copies))
    return out


def shift_share(
    items: list[tuple[F64, list[tuple[int, F64]]]], profiles: tuple[Profile, ...]
) -> float:
    """Share of copies whose key moved by their shift, mode kept."""
    ok = []
    for base, copies in items:
        tonic, mode = guess(base, profiles)
        for steps, chroma in copies:
            moved, moved_mode = guess(chroma, profiles)
            ok.append((moved - tonic) % 12 == steps % 12 and moved_mode == mode)
    return float(np.mean(ok))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heldout", action="store_true", help="also score the held-out split")
    args = parser.parse_args()
    splits = ["tuning", "recordings"] + (["heldout"] if args.heldout else [])
    items = {split: list(labelled_chroma(split)) for split in splits}
    shifts = shifted_chroma()
    heads = [f"{s} ({len(items[s])})" for s in splits] + [f"shifts ({2 * len(shifts)})"]
    print("| profiles | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for name, profiles in CANDIDATES.items():
        cells = [f"{score(items[s], profiles):.3f}" for s in splits]
        cells.append(f"{shift_share(shifts, profiles):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
