"""Keys of the two excerpts and the optional one-semitone shift that makes them compatible."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly, stft

from segue.structure.camelot import camelot, key_name, keys_compatible
from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]

# Krumhansl-Kessler key profiles.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_CHROMA_RATE_HZ = 11025


@dataclass(frozen=True)
class KeyInfo:
    tonic: int
    mode: str  # "major" or "minor"

    @property
    def camelot(self) -> str:
        return camelot(self.tonic, "major" if self.mode == "major" else "minor")

    @property
    def name(self) -> str:
        return key_name(self.tonic, "major" if self.mode == "major" else "minor")

    def shifted(self, semitones: int) -> KeyInfo:
        return KeyInfo((self.tonic + semitones) % 12, self.mode)


def from_analysis(analysis: common_pb2.SongAnalysis) -> KeyInfo | None:
    key = analysis.key
    if not analysis.HasField("key") or key.mode == common_pb2.MODE_UNSPECIFIED:
        return None
    return KeyInfo(
        key.tonic_pitch_class % 12, "major" if key.mode == common_pb2.MODE_MAJOR else "minor"
    )


def estimate_key(mono: FloatArray, rate_hz: int) -> KeyInfo:
    """Key by correlating the mean chroma with the Krumhansl-Kessler profiles."""
    x = resample_poly(mono.astype(np.float64), _CHROMA_RATE_HZ, rate_hz)
    freqs, _, spec = stft(x, fs=_CHROMA_RATE_HZ, nperseg=4096, noverlap=2048)
    power = (np.abs(spec) ** 2).mean(axis=1)
    band = (freqs >= 55.0) & (freqs <= 2000.0)
    pitch = np.round(12.0 * np.log2(freqs[band] / 440.0) + 69.0).astype(int) % 12
    chroma = np.bincount(pitch, weights=np.sqrt(power[band]), minlength=12)
    best, best_r = KeyInfo(0, "major"), -np.inf
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR), ("minor", _MINOR)):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if r > best_r:
                best, best_r = KeyInfo(tonic, mode), r
    return best


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
