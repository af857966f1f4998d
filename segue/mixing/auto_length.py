"""Choosing the overlap length when the client asks for `auto`.

A DJ blends two steady, compatible club tracks over a whole phrase, but fades a ballad (or
a pair that clashes) quickly. The choice follows the phrase length given by the cue points,
a transition score made of tempo fit, key fit and beat clarity, and the material available;
the returned choice says which rule fired and with which numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from segue.v1 import common_pb2

# Below this beat clarity the music is treated as free-time (ballad, ambient).
WEAK_BEAT = 0.45
BALLAD_FADE_S = 8.0
MAX_BLEND_S = 48.0

Rule = Literal["weak beat", "strong pair", "fair pair", "poor pair"]


@dataclass(frozen=True)
class LengthChoice:
    """The auto length, the rule that chose it and the numbers the rule read."""

    bars: int
    rule: Rule
    score: float  # the transition score, 0..1 (`transition_score`)
    clarity: float  # the weaker of the two beat clarities, 0..1
    phrase_bars: int  # the phrase the rule worked from (the cue points', else a default)
    halvings: int  # times halved to stay under MAX_BLEND_S
    shortened: bool  # cut to the most whole bars both excerpts hold
    bar_s: float  # one bar of the outgoing song (s)

    def text(self) -> str:
        """The choice in words, as the QualityReport's length_reason has always put it."""
        reason = self._rule_text()
        reason += f"; halved to stay under {MAX_BLEND_S:.0f} s" * self.halvings
        if self.shortened:
            reason += f"; shortened to {self.bars} bar(s), all the excerpts hold"
        return f"{reason} -> {self.bars} bars ({self.bars * self.bar_s:.1f} s)"

    def _rule_text(self) -> str:
        if self.rule == "weak beat":
            return (
                f"weak beat (clarity {self.clarity:.2f} < {WEAK_BEAT}): a ballad-style fade "
                f"of about {BALLAD_FADE_S:.0f} s rather than a long beat-matched blend"
            )
        if self.rule == "strong pair":
            return (
                f"strong, compatible pair (score {self.score:.2f}, beat clarity "
                f"{self.clarity:.2f}): blend over one whole {self.phrase_bars}-bar phrase"
            )
        if self.rule == "fair pair":
            return (
                f"fair pair (score {self.score:.2f}): half a {self.phrase_bars}-bar phrase, so "
                "that small tempo or key differences are heard only briefly"
            )
        return (
            f"poor pair (score {self.score:.2f}): a short 4-bar transition to hide the clash "
            "of tempo, key or rhythm"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "score": self.score,
            "beat_clarity": self.clarity,
            "phrase_bars": self.phrase_bars,
            "halvings": self.halvings,
            "shortened_to_fit_excerpts": self.shortened,
        }


@dataclass(frozen=True)
class PairFacts:
    bpm_a: float
    beats_per_bar: int
    tempo_ratio: float
    max_stretch: float
    clarity_a: float
    clarity_b: float
    keys_compatible: bool | None  # None when a key is unknown
    max_bars: int  # the most whole bars both excerpts can hold
    phrase_bars: int  # 0 when the cue points do not say


def phrase_bars(analysis: common_pb2.SongAnalysis | None, kind: int, near_s: float) -> int:
    """Phrase length of the cue point of `kind` nearest `near_s`, 0 when none is known."""
    if analysis is None:
        return 0
    cues = [c for c in analysis.cue_points if c.kind == kind and c.phrase_bars > 0]
    if not cues:
        return 0
    return int(min(cues, key=lambda c: abs(c.time_s - near_s)).phrase_bars)


def transition_score(facts: PairFacts) -> float:
    """0..1: how well the pair would blend (tempo fit, key fit and beat clarity)."""
    tempo_fit = max(0.0, 1.0 - abs(facts.tempo_ratio - 1.0) / facts.max_stretch)
    key_fit = 0.6 if facts.keys_compatible is None else (1.0 if facts.keys_compatible else 0.2)
    rhythm = min(facts.clarity_a, facts.clarity_b)
    return 0.4 * tempo_fit + 0.3 * key_fit + 0.3 * rhythm


def _rule(score: float, clarity: float, phrase: int, bar_s: float) -> tuple[Rule, int]:
    """The rule that fires for the pair, and the bars it asks for."""
    if clarity < WEAK_BEAT:
        return "weak beat", max(2, round(BALLAD_FADE_S / bar_s))
    if score >= 0.75:
        return "strong pair", phrase
    if score >= 0.5:
        return "fair pair", max(4, phrase // 2)
    return "poor pair", 4


def choose_length(facts: PairFacts) -> LengthChoice:
    """The overlap in bars for `auto`: the rule's length, halved and cut to fit."""
    bar_s = facts.beats_per_bar * 60.0 / facts.bpm_a
    rhythm = min(facts.clarity_a, facts.clarity_b)
    score = transition_score(facts)
    phrase = facts.phrase_bars or (16 if rhythm >= 0.75 else 8)
    rule, bars = _rule(score, rhythm, phrase, bar_s)
    halvings = 0
    while bars > 1 and bars * bar_s > MAX_BLEND_S:
        bars //= 2
        halvings += 1
    shortened = bars > facts.max_bars
    if shortened:
        bars = max(1, facts.max_bars)
    return LengthChoice(bars, rule, score, rhythm, phrase, halvings, shortened, bar_s)
