"""Why a transition's overlap is as long as it is, as data: what was asked, what was chosen
and why (the auto rule's facts, a tempo reading, halving to fit a set, an unmatched-tempo
fade, where the bass was swapped).

`LengthReason.text()` is the QualityReport's `length_reason` string; `to_json()` is the
same facts for the continuous mix's JSON sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .auto_length import LengthChoice
from .errors import TempoMismatch


@dataclass(frozen=True)
class LengthRequest:
    """The length the planner was asked for."""

    length: str  # "bars", "seconds" or "auto"
    bars: int = 0
    seconds: float = 0.0
    mashup: bool = False

    def name(self) -> str:
        """The request in a few words: "16 bars", "9.0 s" or "auto"."""
        if self.length == "bars":
            return f"{self.bars} bars"
        return f"{self.seconds:.1f} s" if self.length == "seconds" else "auto"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"length": self.length, "mashup": self.mashup}
        if self.length == "bars":
            out["bars"] = self.bars
        elif self.length == "seconds":
            out["seconds"] = self.seconds
        return out


@dataclass(frozen=True)
class TempoReading:
    """One song's beats read at another metrical level, so that the two tempos match."""

    song: str  # "incoming" or "outgoing"
    level: str  # "half time", "double time", "3:2", "2:3", "4:3" or "3:4"
    # Re-read on the onsets (the 3:2 family), with the tempos and plausibility below.
    reread: bool = False
    bpm_tracked: float = 0.0
    bpm_read: float = 0.0
    plausibility: float = 0.0  # onset strength on the new beats over that on the tracked ones

    def text(self) -> str:
        if not self.reread:
            return f"{self.song} at {self.level}"
        return (
            f"{self.song} read at {self.level} of its tracked beat ({self.bpm_tracked:.1f} -> "
            f"{self.bpm_read:.1f} BPM; onsets on the new beats {self.plausibility:.2f}x as strong)"
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"song": self.song, "level": self.level}
        if self.reread:
            out |= {
                "bpm_tracked": self.bpm_tracked,
                "bpm_read": self.bpm_read,
                "onset_plausibility": self.plausibility,
            }
        return out


@dataclass(frozen=True)
class Halving:
    """A continuous mix's request halved until both songs had room for it."""

    request: LengthRequest  # the set's request
    bars: int  # the length that fitted
    tempo_ramp_bars: int

    def text(self) -> str:
        return (
            f"{self.bars} bars with a {self.tempo_ramp_bars}-bar tempo ramp: the longest "
            f"halving of the request ({self.request.name()}) that fits the part of each song "
            "its other transition leaves"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request.to_json(),
            "bars": self.bars,
            "tempo_ramp_bars": self.tempo_ramp_bars,
        }


@dataclass(frozen=True)
class UnmatchedFade:
    """A continuous mix's pair too far apart in tempo, faded at their own tempos instead."""

    mismatch: TempoMismatch
    fade_s: float  # the fade asked for instead (s)

    def text(self) -> str:
        return (
            f"{self.mismatch.message()}; faded over {self.fade_s:.0f} s at each song's own "
            "tempo instead of a beat-matched blend"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tempo_ratio": self.mismatch.ratio,
            "bpm_outgoing": self.mismatch.bpm_outgoing,
            "bpm_incoming": self.mismatch.bpm_incoming,
            "max_stretch": self.mismatch.max_stretch,
            "fade_s": self.fade_s,
        }


@dataclass(frozen=True)
class BassSwapPlace:
    """Where the bass changed hands: a downbeat, counted in bars into the overlap."""

    ramp_bars: float  # the swap's ramp (bars)
    downbeat_bar: int  # bars from the overlap's start to the swap's downbeat
    overlap_bars: int

    def text(self) -> str:
        return (
            f"bass swapped over {self.ramp_bars:g} bars on the downbeat {self.downbeat_bar} bars "
            f"into the {self.overlap_bars}-bar overlap, where the mix changes sound least"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ramp_bars": self.ramp_bars,
            "downbeat_bar": self.downbeat_bar,
            "overlap_bars": self.overlap_bars,
        }


@dataclass(frozen=True)
class LengthReason:
    """Why the overlap is as long as it is: what was asked, what was chosen and why."""

    asked: LengthRequest  # what the planner was given (after any halving or fade)
    beats: int  # the overlap, in beats of the outgoing grid
    beats_per_bar: int
    beat_period_s: float  # one beat of the outgoing grid (s)
    auto: LengthChoice | None = None  # the auto rule's facts, when asked for auto
    tempo_reading: TempoReading | None = None  # None: both songs' beats as tracked
    halved: Halving | None = None
    unmatched: UnmatchedFade | None = None
    bass_swap: BassSwapPlace | None = None

    def text(self) -> str:
        """The QualityReport's length_reason: the choice, then the bass swap."""
        if self.unmatched is not None:
            choice = f"{self.unmatched.text()}: {self._planned_text()}"
        elif self.halved is not None:
            choice = self.halved.text()
        else:
            choice = self._planned_text()
        swap = self.bass_swap.text() if self.bass_swap is not None else ""
        return "; ".join(r for r in (choice, swap) if r)

    def _planned_text(self) -> str:
        """The planner's own choice, for the request it was given."""
        asked = self.asked
        if asked.length == "bars":
            text = f"{asked.bars} bars, as requested" + (" (mashup)" if asked.mashup else "")
        elif asked.length == "seconds":
            text = (
                f"{asked.seconds:.1f} s requested: {self.beats} beats of the outgoing grid "
                f"({self.beats * self.beat_period_s:.1f} s)"
            )
        else:
            text = self.auto.text() if self.auto is not None else "auto"
        reading = self.tempo_reading
        return f"{text}; {reading.text()}" if reading is not None else text

    def with_bass_swap(self, place: BassSwapPlace | None) -> LengthReason:
        return replace(self, bass_swap=place)

    def to_json(self) -> dict[str, Any]:
        """The facts for a JSON sheet (the text is the report's length_reason)."""
        out: dict[str, Any] = {
            "asked": self.asked.to_json(),
            "chosen": {
                "beats": self.beats,
                "bars": round(self.beats / self.beats_per_bar),
                "seconds": self.beats * self.beat_period_s,
            },
        }
        parts = {
            "auto": self.auto,
            "tempo_reading": self.tempo_reading,
            "halved": self.halved,
            "unmatched_tempo_fade": self.unmatched,
            "bass_swap": self.bass_swap,
        }
        out |= {name: part.to_json() for name, part in parts.items() if part is not None}
        return out
