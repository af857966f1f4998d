"""Quality control: which annotators' answers should not train the model.

Three checks per annotator, over all their answers:

- gold accuracy: the share of GOLD pages where they picked the known odd one out;
- self-consistency: the share of REPEAT pages where they picked the same *song* as on the
  original page (the clips moved, so slots do not compare; songs do);
- listening ratio: the median over their answers of the least-listened clip's share
  (listened seconds / clip seconds, at most 1): someone answering before hearing all three
  clips scores below 1.

An annotator is flagged when a check with enough evidence falls below its `QualityRules`
threshold; the reasons say which.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from segue.studio.model import AnsweredTriplet, TripletKind


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the checks (shares 0 to 1) and the evidence each needs.

    Defaults: flag gold accuracy under 0.66 once there are 2 or more gold answers (one miss
    in three gold pages, 0.667, passes; two misses do not; 0.67 would flag a single slip in
    the default session's three gold pages); consistency under 0.5 once
    there are 2 or more answered repeats (changing one's mind on one of two is tolerated,
    on both is not); a listening ratio under 0.9 (clips mostly heard to their end).
    """

    min_gold_accuracy: float = 0.66
    min_gold_answers: int = 2
    min_consistency: float = 0.5
    min_repeat_answers: int = 2
    min_listening_ratio: float = 0.9


@dataclass(frozen=True)
class AnnotatorQuality:
    """The checks of one annotator. Ratios are None where there was nothing to measure."""

    annotator_id: str
    answers: int
    gold_answers: int
    gold_correct: int
    repeat_answers: int
    repeats_consistent: int
    listening_ratio: float | None
    flagged: bool
    reasons: tuple[str, ...]

    @property
    def gold_accuracy(self) -> float | None:
        """Share of gold pages answered right, or None without gold answers."""
        return self.gold_correct / self.gold_answers if self.gold_answers else None

    @property
    def consistency(self) -> float | None:
        """Share of repeats answered with the same song, or None without answered repeats."""
        return self.repeats_consistent / self.repeat_answers if self.repeat_answers else None


def annotator_quality(answers: Iterable[AnsweredTriplet],
                      rules: QualityRules | None = None) -> list[AnnotatorQuality]:
    """The checks of every annotator with answers, sorted by annotator id."""
    by_annotator: dict[str, list[AnsweredTriplet]] = defaultdict(list)
    for answer in answers:
        by_annotator[answer.annotator_id].append(answer)
    rules = rules or QualityRules()
    return [assess(annotator, by_annotator[annotator], rules)
            for annotator in sorted(by_annotator)]


def flagged_annotators(answers: Iterable[AnsweredTriplet],
                       rules: QualityRules | None = None) -> set[str]:
    """Ids of the annotators whose answers fail the rules."""
    return {q.annotator_id for q in annotator_quality(answers, rules) if q.flagged}


def assess(annotator_id: str, answers: list[AnsweredTriplet],
           rules: QualityRules) -> AnnotatorQuality:
    """The checks of one annotator over their `answers`."""
    gold = [a for a in answers if a.triplet.kind is TripletKind.GOLD]
    gold_correct = sum(a.pick == a.triplet.expected_odd for a in gold)
    repeat_total, repeat_same = self_consistency(answers)
    listening = listening_ratio(answers)
    quality = AnnotatorQuality(annotator_id, len(answers), len(gold), gold_correct,
                               repeat_total, repeat_same, listening, False, ())
    reasons = _reasons(quality, rules)
    return replace(quality, flagged=bool(reasons), reasons=reasons)


def _reasons(q: AnnotatorQuality, rules: QualityRules) -> tuple[str, ...]:
    """Why `q` fails the rules, one sentence per failed check (empty: it passes)."""
    reasons = []
    accuracy, consistency = q.gold_accuracy, q.consistency
    if (accuracy is not None and q.gold_answers >= rules.min_gold_answers
            and accuracy < rules.min_gold_accuracy):
        reasons.append(f"gold accuracy {accuracy:.2f} ({q.gold_correct} of {q.gold_answers}) "
                       f"under {rules.min_gold_accuracy:.2f}")
    if (consistency is not None and q.repeat_answers >= rules.min_repeat_answers
            and consistency < rules.min_consistency):
        reasons.append(f"consistency {consistency:.2f} ({q.repeats_consistent} of "
                       f"{q.repeat_answers} repeats) under {rules.min_consistency:.2f}")
    if q.listening_ratio is not None and q.listening_ratio < rules.min_listening_ratio:
        reasons.append(f"listening ratio {q.listening_ratio:.2f} under "
                       f"{rules.min_listening_ratio:.2f}")
    return tuple(reasons)


def self_consistency(answers: list[AnsweredTriplet]) -> tuple[int, int]:
    """(answered repeats whose original is answered too, those where the picked song is the
    same); an original is the answer whose item id is the repeat's `repeat_of`."""
    by_item = {a.item_id: a for a in answers}
    total = same = 0
    for answer in answers:
        if answer.triplet.kind is not TripletKind.REPEAT or answer.triplet.repeat_of is None:
            continue
        original = by_item.get(answer.triplet.repeat_of)
        if original is None:
            continue
        total += 1
        same += picked_song(answer) == picked_song(original)
    return total, same


def picked_song(answer: AnsweredTriplet) -> str:
    """The song id of the clip picked as the odd one out."""
    return answer.triplet.clips[answer.pick].song_id


def listening_ratio(answers: list[AnsweredTriplet]) -> float | None:
    """Median over `answers` of min over the three clips of listened / clip seconds (each
    capped at 1); None without answers."""
    if not answers:
        return None
    shares = [
        min(min(heard / clip.duration_s, 1.0)
            for heard, clip in zip(a.listened_s, a.triplet.clips, strict=True))
        for a in answers
    ]
    return float(statistics.median(shares))


def model_agreement(answers: Iterable[AnsweredTriplet],
                    exclude: set[str] | frozenset[str] = frozenset()) -> tuple[int, int]:
    """(answers where the annotator picked the model's odd one out, answers where the model
    had one), over RANDOM and ACTIVE pages of annotators not in `exclude`."""
    agree = total = 0
    for answer in answers:
        t = answer.triplet
        if (answer.annotator_id in exclude or t.model_odd is None
                or t.kind not in (TripletKind.RANDOM, TripletKind.ACTIVE)):
            continue
        total += 1
        agree += answer.pick == t.model_odd
    return agree, total


__all__ = [
    "AnnotatorQuality",
    "QualityRules",
    "annotator_quality",
    "assess",
    "flagged_annotators",
    "listening_ratio",
    "model_agreement",
    "picked_song",
    "self_consistency",
]
