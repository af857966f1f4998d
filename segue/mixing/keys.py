"""Keys of the two excerpts and the optional one-semitone shift that makes them compatible."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from segue.structure.camelot import camelot, keys_compatible
from segue.v1 import common_pb2

from .excerpt import Excerpt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class KeyInfo:
    tonic: int
    mode: str  # "major" or "minor"

    @property
    def camelot(self) -> str:
        return camelot(self.tonic, "major" if self.mode == "major" else "minor")

    def shifted(self, semitones: int) -> KeyInfo:
        return KeyInfo((self.tonic + semitones) % 12, self.mode)


@dataclass(frozen=True)
class KeyShift:
    """How far B is shifted, and whether the keys then mix."""

    semitones: int  # -1, 0 or +1
    compatible: bool | None  # None when a key is unknown


def from_analysis(analysis: common_pb2.SongAnalysis) -> KeyInfo | None:
    """The analysis' key, None when it names none."""
    if not analysis.HasField("key") or analysis.key.mode == common_pb2.MODE_UNSPECIFIED:
        return None
    return _key_info(analysis.key)


def _key_info(key: common_pb2.Key) -> KeyInfo:
    return KeyInfo(
        key.tonic_pitch_class % 12, "major" if key.mode == common_pb2.MODE_MAJOR else "minor"
    )


def key_of(excerpt: Excerpt) -> KeyInfo:
    """The client's key, else the structure analysis' key of the excerpt.

    The structure analysis always names a key (`segue.structure.fill_analysis`).
    """
    given = from_analysis(excerpt.analysis) if excerpt.analysis is not None else None
    return given if given is not None else _key_info(excerpt.structure.key)


def choose_key_shift(a: Excerpt, b: Excerpt, allow_shift: bool) -> KeyShift:
    """B's shift (one semitone at most, and only when that makes the keys compatible).

    Without a shift, compatibility is known only when both clients sent keys.
    """
    if allow_shift:
        key_a, key_b = key_of(a), key_of(b)
        shift = choose_shift(key_a, key_b)
        return KeyShift(shift, keys_compatible(key_a.camelot, key_b.shifted(shift).camelot))
    if a.analysis is not None and b.analysis is not None:
        ka, kb = from_analysis(a.analysis), from_analysis(b.analysis)
        if ka is not None and kb is not None:
            return KeyShift(0, keys_compatible(ka.camelot, kb.camelot))
    return KeyShift(0, None)


def choose_shift(key_a: KeyInfo, key_b: KeyInfo) -> int:
    """Semitones (-1, 0 or +1) to shift B by: 0 when already compatible or when no shift helps."""
    if keys_compatible(key_a.camelot, key_b.camelot):
        return 0
    for semitones in (1, -1):
        if keys_compatible(key_a.camelot, key_b.shifted(semitones).camelot):
            return semitones
    return 0


def pitch_shift_by_resampling(audio: FloatArray, semitones: int) -> tuple[FloatArray, float]:
    """Audio played 2^(s/12) times faster (pitch and tempo both move) and the exact factor.

    The time-stretch that follows removes the tempo change, so together they shift pitch
    only. Resampling is cleaner than a phase vocoder and costs one polyphase filter.
    """
    if semitones == 0:
        return audio, 1.0
    ratio = Fraction(2 ** (semitones / 12)).limit_denominator(200)
    shifted = resample_poly(audio, ratio.denominator, ratio.numerator, axis=1).astype(np.float32)
    return shifted, float(ratio)
