"""The listening test's results: each condition's preference rate and mean rating, with 95%
intervals.

- Preference rate: wins / comparisons the condition took part in, with the Wilson score
  interval (good coverage for small counts and rates near 0 or 1, unlike the Wald interval).
- Mean rating (1 to 5): Student's t interval, mean +- t(0.975, n-1) * s / sqrt(n), clipped to
  the rating scale; undefined (None) below two ratings. Every rating of a side counts once.

"Segue mix seams" is an extra row: ratings of the seams of continuous mixes (no comparisons,
so its preference figures are None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import t as student_t

from segue.studio.listening_model import (
    MAX_RATING,
    MIN_RATING,
    AnsweredComparison,
    Condition,
    SeamRating,
)

CONFIDENCE = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
SEAMS_ROW = "Segue mix seams"
LABELS = {Condition.SEGUE: "Segue (matcher's next segment, Segue mixer)",
          Condition.CROSSFADE: "Plain linear crossfade (same pair, same lengths)",
          Condition.RANDOM: "Random next song (Segue mixer)"}

Interval = tuple[float, float]


def wilson_interval(wins: int, n: int, z: float = Z_95) -> Interval | None:
    """The Wilson score interval of the rate `wins / n`; None when n is 0."""
    if n < 0 or not 0 <= wins <= n:
        raise ValueError(f"wins must be 0 to n and n >= 0, got {wins} of {n}")
    if n == 0:
        return None
    p = wins / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE,
               bounds: Interval = (MIN_RATING, MAX_RATING)) -> Interval | None:
    """Student's t interval of the mean of `values`, clipped to `bounds`; None below 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return max(bounds[0], mean - half), min(bounds[1], mean + half)


@dataclass(frozen=True)
class ResultRow:
    """One condition's figures (rates 0..1, ratings 1..5; None where there is nothing)."""

    name: str
    label: str
    comparisons: int
    wins: int
    preference: float | None
    preference_interval: Interval | None
    ratings: int
    mean_rating: float | None
    rating_interval: Interval | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("preference_interval", "rating_interval"):
            out[key] = None if out[key] is None else list(out[key])
        return out


def _row(name: str, label: str, comparisons: int, wins: int, ratings: list[int]) -> ResultRow:
    return ResultRow(
        name=name, label=label, comparisons=comparisons, wins=wins,
        preference=wins / comparisons if comparisons else None,
        preference_interval=wilson_interval(wins, comparisons),
        ratings=len(ratings), mean_rating=sum(ratings) / len(ratings) if ratings else None,
        rating_interval=t_interval([float(r) for r in ratings]))


def results(answered: Iterable[AnsweredComparison], seams: Iterable[SeamRating]
            ) -> list[ResultRow]:
    """One row per condition (in Condition order), then the "Segue mix seams" row."""
    comparisons = dict.fromkeys(Condition, 0)
    wins = dict.fromkeys(Condition, 0)
    ratings: dict[Condition, list[int]] = {c: [] for c in Condition}
    for item in answered:
        for side, transition in enumerate(item.page.sides):
            comparisons[transition.condition] += 1
            wins[transition.condition] += int(item.answer.preferred == side)
            ratings[transition.condition].append(item.answer.ratings[side])
    rows = [_row(c.value, LABELS[c], comparisons[c], wins[c], ratings[c]) for c in Condition]
    seam_values = [s.rating for s in seams]
    rows.append(_row("seams", SEAMS_ROW, 0, 0, seam_values))
    return rows


__all__ = ["CONFIDENCE", "SEAMS_ROW", "ResultRow", "results", "t_interval", "wilson_interval"]
