"""Choosing the overlap length when the client asks for `auto`.

A DJ blends two steady, compatible club tracks over a whole phrase, but fades a ballad (or
a pair that clashes) quickly. The choice follows the phrase length given by the cue points,
a transition score made of tempo fit, key fit and beat clarity, and the material available;
the returned reason says which rule fired and with which numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from segue.v1 import common_pb2

# Below this beat clarity the music is treated as free-time (ballad, ambient).
WEAK_BEAT = 0.45
BALLAD_FADE_S = 8.0
MAX_BLEND_S = 48.0


@dataclass(frozen=True)
class LengthChoice:
    bars: int
    reason: str


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
    tempo_fit = max(0.0, 1.0 - abs(facts.tempo_ratio - 1.0) / facts.max_stretch)
    key_fit = 0.6 if facts.keys_compatible is None else (1.0 if facts.keys_compatible else 0.2)
    rhythm = min(facts.clarity_a, facts.clarity_b)
    return 0.4 * tempo_fit + 0.3 * key_fit + 0.3 * rhythm


def choose_length(facts: PairFacts) -> LengthChoice:
    bar_s = facts.beats_per_bar * 60.0 / facts.bpm_a
    rhythm = min(facts.clarity_a, facts.clarity_b)
    score = transition_score(facts)
    phrase = facts.phrase_bars or (16 if rhythm >= 0.75 else 8)
    if rhythm < WEAK_BEAT:
        bars = max(2, round(BALLAD_FADE_S / bar_s))
        reason = (
            f"weak beat (clarity {rhythm:.2f} < {WEAK_BEAT}): a ballad-style fade of about "
            f"{BALLAD_FADE_S:.0f} s rather than a long beat-matched blend"
        )
    elif score >= 0.75:
        bars = phrase
        reason = (
            f"strong, compatible pair (score {score:.2f}, beat clarity {rhythm:.2f}): "
            f"blend over one whole {phrase}-bar phrase"
        )
    elif score >= 0.5:
        bars = max(4, phrase // 2)
        reason = (
            f"fair pair (score {score:.2f}): half a {phrase}-bar phrase, so that small "
            "tempo or key differences are heard only briefly"
        )
    else:
        bars = 4
        reason = (
            f"poor pair (score {score:.2f}): a short 4-bar transition to hide the clash "
            "of tempo, key or rhythm"
        )
    while bars > 1 and bars * bar_s > MAX_BLEND_S:
        bars //= 2
        reason += f"; halved to stay under {MAX_BLEND_S:.0f} s"
    if bars > facts.max_bars:
        bars = max(1, facts.max_bars)
        reason += f"; shortened to {bars} bar(s), all the excerpts hold"
    return LengthChoice(bars, f"{reason} -> {bars} bars ({bars * bar_s:.1f} s)")
