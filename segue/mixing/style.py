"""What a transition is asked to be: its validated Style, and the render Params."""

from __future__ import annotations

from dataclasses import dataclass

from segue.v1 import mixer_pb2

from .errors import MixInputError

DEFAULT_TARGET_LUFS = -14.0
DEFAULT_CONTEXT_S = 4.0
DEFAULT_MASHUP_BARS = 8
MAX_BARS = 64


@dataclass(frozen=True)
class Style:
    """A validated TransitionStyle (or mashup request)."""

    length: str  # "bars", "seconds" or "auto"
    bars: int = 0
    seconds: float = 0.0
    curve: int = mixer_pb2.FADE_CURVE_EQUAL_POWER
    eq_bass_swap: bool = False
    filter_sweep: bool = False
    tempo_ramp_bars: int = 0
    allow_key_shift: bool = False
    mashup: bool = False
    # False: fade at each song's own tempo, unstretched (for pairs too far apart in tempo).
    beat_match: bool = True

    @classmethod
    def from_proto(cls, style: mixer_pb2.TransitionStyle) -> Style:
        kind = style.WhichOneof("length") or "auto"
        if kind == "bars" and not 1 <= style.bars <= MAX_BARS:
            raise MixInputError(f"style.bars must be 1 to {MAX_BARS}, got {style.bars}")
        if kind == "seconds" and not (0.0 < style.seconds <= 120.0):
            raise MixInputError(f"style.seconds must be in (0, 120], got {style.seconds}")
        if kind == "auto" and style.HasField("auto") and not style.auto:
            raise MixInputError("style.auto is false: set bars, seconds or auto=true")
        if style.curve not in mixer_pb2.FadeCurve.values():
            raise MixInputError(f"style.curve {style.curve} is not a FadeCurve")
        if style.tempo_ramp_bars > MAX_BARS:
            raise MixInputError(f"style.tempo_ramp_bars must be at most {MAX_BARS}")
        return cls(
            kind,
            style.bars,
            style.seconds,
            style.curve or mixer_pb2.FADE_CURVE_EQUAL_POWER,
            style.eq_bass_swap,
            style.filter_sweep,
            style.tempo_ramp_bars,
            style.allow_key_shift,
        )

    @classmethod
    def for_mashup(cls, bars: int, style: mixer_pb2.TransitionStyle) -> Style:
        if not 1 <= bars <= MAX_BARS:
            raise MixInputError(f"mashup_bars must be 1 to {MAX_BARS}, got {bars}")
        return cls(
            "bars",
            bars,
            curve=mixer_pb2.FADE_CURVE_EQUAL_POWER,
            eq_bass_swap=True,
            filter_sweep=style.filter_sweep,
            tempo_ramp_bars=style.tempo_ramp_bars,
            allow_key_shift=True,
            mashup=True,
        )


@dataclass(frozen=True)
class Params:
    """How every transition is rendered: rate, loudness target, context and limits."""

    rate_hz: int = 44100
    target_lufs: float = DEFAULT_TARGET_LUFS
    context_s: float = DEFAULT_CONTEXT_S  # output before the overlap (and after it)
    ceiling_dbtp: float = -1.0
    max_stretch: float = 0.12  # largest tempo change of the incoming song (0.12 = +-12%)
