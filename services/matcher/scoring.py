"""The score of a transition: a weighted sum of components, each in [0, 1].

- transition: cosine of the exit vector left and the candidate's entry vector (below 0 -> 0);
- feel: cosine of the two songs' feel vectors (below 0 -> 0);
- tempo: 1 at equal tempo (or exactly half/double), 0.5 at 6% apart, falling like a Gaussian;
- key: 1 for the same Camelot code, 0.8 for a neighbour (+-1 hour, relative key), else 0;
- energy: 1 - |energy left - energy entered| (or the target energy of a playlist step).
A component whose inputs are unknown on either side scores a neutral 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.structure.camelot import camelot_neighbours
from segue.v1 import matcher_pb2
from services.matcher.errors import InvalidArgumentError

NEUTRAL = 0.5
TEMPO_TOLERANCE = 0.06  # +-6%: the range a DJ can beat-match by pitching
NEIGHBOUR_KEY_SCORE = 0.8
COMPONENTS = ("transition", "feel", "tempo", "key", "energy")
# Each weight is 0 to MAX_WEIGHT (only their ratios matter; a score stays a finite float32).
MAX_WEIGHT = 1_000.0

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Weights:
    transition: float = 0.6
    feel: float = 0.2
    tempo: float = 0.1
    key: float = 0.05
    energy: float = 0.05

    @classmethod
    def from_proto(cls, message: matcher_pb2.ScoreWeights, field: str = "weights") -> Weights:
        defaults = cls()
        values: dict[str, float] = {}
        untyped: Any = message  # HasField's field names are literal types
        for name in COMPONENTS:
            value = (
                float(getattr(message, name))
                if untyped.HasField(name)
                else float(getattr(defaults, name))
            )
            if not (math.isfinite(value) and 0 <= value <= MAX_WEIGHT):
                raise InvalidArgumentError(
                    f"{field}.{name}", f"must be a number from 0 to {MAX_WEIGHT:g}, got {value!r}"
                )
            values[name] = value
        if sum(values.values()) == 0:
            raise InvalidArgumentError(field, "at least one weight must be positive")
        return cls(**values)

    def as_array(self) -> FloatArray:
        return np.array([getattr(self, name) for name in COMPONENTS], dtype=np.float64)


def cosine_component(similarity: FloatArray) -> FloatArray:
    return np.clip(similarity, 0.0, 1.0)


def tempo_component(source_bpm: float | None, candidate_bpm: FloatArray) -> FloatArray:
    """Tempo closeness counting half and double time; NaN candidate tempo = unknown."""
    if source_bpm is None or source_bpm <= 0:
        return np.full(candidate_bpm.shape, NEUTRAL)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(candidate_bpm / source_bpm)
        # Distance in log-tempo to the nearest of x0.5, x1, x2.
        distance = np.min(np.abs(ratio[:, None] - np.log([0.5, 1.0, 2.0])[None, :]), axis=1)
    scale = math.log1p(TEMPO_TOLERANCE)
    score = np.exp(-math.log(2.0) * (distance / scale) ** 2)
    return np.where(np.isfinite(score), score, NEUTRAL)


def tempo_compatible_ranges(source_bpm: float) -> list[tuple[float, float]]:
    """The tempo windows within +-6% of a tempo, its half and its double."""
    return [
        (m * source_bpm * (1 - TEMPO_TOLERANCE), m * source_bpm * (1 + TEMPO_TOLERANCE))
        for m in (0.5, 1.0, 2.0)
    ]


def key_scores(source_camelot: str | None) -> dict[str, float]:
    """Score of each candidate Camelot code that scores above 0."""
    if not source_camelot:
        return {}
    same, *neighbours = camelot_neighbours(source_camelot)
    out = dict.fromkeys(neighbours, NEIGHBOUR_KEY_SCORE)
    out[same] = 1.0
    return out


def key_component(source_camelot: str | None, candidates: list[str | None]) -> FloatArray:
    if not source_camelot:
        return np.full(len(candidates), NEUTRAL)
    table = key_scores(source_camelot)
    return np.array(
        [NEUTRAL if c is None else table.get(_normalise_camelot(c), 0.0) for c in candidates],
        dtype=np.float64,
    )


def _normalise_camelot(code: str) -> str:
    return code.strip().upper()


def energy_component(source_energy: float | None, candidate_energy: FloatArray) -> FloatArray:
    if source_energy is None:
        return np.full(candidate_energy.shape, NEUTRAL)
    score = 1.0 - np.abs(np.clip(candidate_energy, 0, 1) - min(max(source_energy, 0.0), 1.0))
    return np.where(np.isfinite(score), score, NEUTRAL)


def combine(components: FloatArray, weights: Weights) -> tuple[FloatArray, FloatArray]:
    """components [N, 5] -> (weighted [N, 5], total score [N])."""
    weighted = components * weights.as_array()[None, :]
    return weighted, weighted.sum(axis=1)


def breakdown(components: FloatArray, weighted: FloatArray) -> matcher_pb2.ScoreBreakdown:
    """One candidate's row of components as the proto explanation."""
    values = {name: float(components[i]) for i, name in enumerate(COMPONENTS)}
    values.update({f"weighted_{name}": float(weighted[i]) for i, name in enumerate(COMPONENTS)})
    return matcher_pb2.ScoreBreakdown(**values)
