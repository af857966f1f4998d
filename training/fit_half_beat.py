"""Fits the band weights of segue/structure/half_beat.py on the tuning split.

Every labelled grid of the rendered-MIDI set's tuning split (bench/midi_set.py, `make data`)
and of the generated songs gives two examples: its band votes (`off_beat_votes`) for the
grid itself, on the beat, and for the same grid half a beat later, off it. The weights are
an L2-regularised logistic regression without intercept (the two cases mirror each other),
so the decision is the sign of the weighted vote. The held-out split is never read.

    python training/fit_half_beat.py [--set-dir data/midi_set] [--songs 48]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.optimize
import scipy.special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ and devkit/ are not installed

from bench import midi_set  # noqa: E402
from devkit.synth import generate_song  # noqa: E402
from segue.structure import StructureAccumulator  # noqa: E402
from segue.structure.analysis import ONSET_FPS, band_onsets  # noqa: E402
from segue.structure.half_beat import off_beat_votes  # noqa: E402

SR = 22050
F64 = npt.NDArray[np.float64]


def votes(audio: npt.NDArray[np.float32], beats_s: F64) -> F64:
    """The band votes for the labelled grid of one song (its beats in its first minutes)."""
    state = StructureAccumulator(SR)
    whole = len(audio) // SR
    state.push_batch(audio[: whole * SR].reshape(whole, SR))
    features = state.features()
    _, _, bands = band_onsets(features)
    beats = beats_s[beats_s < features.duration_s - 0.5]
    return off_beat_votes(beats, bands, ONSET_FPS)


def labelled_votes(set_dir: Path, songs: int) -> list[F64]:
    """Votes of the tuning renderings' and the generated songs' labelled grids."""
    out = [votes(p.audio(), np.asarray(p.labels.beats_s)) for p in midi_set.load("tuning", set_dir)]
    for i in range(songs):
        seed = (2000 if i < songs // 2 else 3000 - songs // 2) + i
        k = seed - 1000  # the settings bench/eval_structure.py gives each seed
        song = generate_song(
            seed,
            duration_s=float([45, 60, 90][k % 3]),
            swing=[0.0, 0.3, 0.6][(k // 3) % 3],
            rubato=k % 4 == 3,
        )
        out.append(votes(song.audio.astype(np.float32), np.asarray(song.beat_times_s)))
    return out


def fit(on_beat: list[F64], c: float = 1.0) -> F64:
    """Weights w minimising C * sum log(1 + exp(-y w.x)) + |w|^2 / 2 over the examples x
    (y = +1) and -x (y = -1), which is twice the sum over x alone."""
    x = np.stack(on_beat)

    def loss(w: F64) -> tuple[float, F64]:
        margin = x @ w
        value = 2.0 * c * float(np.logaddexp(0.0, -margin).sum()) + 0.5 * float(w @ w)
        gradient = -2.0 * c * (x.T @ scipy.special.expit(-margin)) + w
        return value, gradient

    result = scipy.optimize.minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    weights: F64 = result.x
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set-dir", type=Path, default=midi_set.SET_DIR)
    parser.add_argument("--songs", type=int, default=48, help="generated songs beside the set")
    args = parser.parse_args()
    examples = labelled_votes(args.set_dir, args.songs)
    weights = fit(examples)
    right = float(np.mean(np.stack(examples) @ weights > 0))
    print(f"{len(examples)} labelled grids; on-beat grid preferred in {right:.1%}")
    print("BAND_WEIGHTS = (" + ", ".join(f"{w:.2f}" for w in weights) + ")")


if __name__ == "__main__":
    main()
