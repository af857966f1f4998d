"""Streaming integrated loudness (ITU-R BS.1770-4) of mono audio.

K-weighting runs as two biquads (scipy's sosfilt kernel) whose filter state is carried between
pushes; the gating blocks (400 ms, 75 % overlap) are assembled from 100 ms sub-block
energies, so only those energies are kept, not the audio. The result equals one pass over the
whole signal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# The kernel behind scipy.signal.sosfilt: sosfilt re-checks and re-shapes its arguments on
# every call, about 55 of the 200 µs that a 1 s window costs (measured), while the meter's
# arguments are shaped once. scipy is pinned exactly; tests/test_loudness_meter.py holds the
# two equal.
from scipy.signal._sosfilt import _sosfilt

from segue.loudness import k_weighting_sos

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
# Reported for silence, where the gated mean is empty.
SILENCE_LUFS = ABSOLUTE_GATE_LUFS


class LoudnessMeter:
    """Accumulates K-weighted energy per 100 ms; `integrated_lufs()` gates at the end."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.quarter = round(rate * 0.1)
        self._sos = np.ascontiguousarray(k_weighting_sos(rate), dtype=np.float64)
        self.zi = np.zeros((len(self._sos), 2), dtype=np.float64)
        # Sum of squares of each full 100 ms sub-block; grown by doubling, so checkpoints
        # copy a slice instead of converting a list.
        self._energies = np.zeros(64, dtype=np.float64)
        self._count = 0
        self.partial_sum = 0.0
        self.partial_count = 0

    @property
    def energies(self) -> Float64Array:
        return self._energies[: self._count]

    def _append(self, values: Float64Array) -> None:
        end = self._count + values.size
        if end > self._energies.size:
            grown = np.zeros(max(end, 2 * self._energies.size), dtype=np.float64)
            grown[: self._count] = self.energies
            self._energies = grown
        self._energies[self._count : end] = values
        self._count = end

    def push(self, audio: FloatArray | Float64Array) -> None:
        if audio.size == 0:
            return
        # A copy, filtered in place; zi[None] is a view, so the kernel updates self.zi.
        x = np.array(audio, dtype=np.float64, ndmin=2)
        _sosfilt(self._sos, x, self.zi[None])
        squares = x[0] * x[0]
        pos = 0
        if self.partial_count:
            take = min(self.quarter - self.partial_count, squares.size)
            self.partial_sum += float(squares[:take].sum())
            self.partial_count += take
            pos = take
            if self.partial_count == self.quarter:
                self._append(np.asarray([self.partial_sum]))
                self.partial_sum, self.partial_count = 0.0, 0
        whole = (squares.size - pos) // self.quarter
        if whole:
            blocks = squares[pos : pos + whole * self.quarter].reshape(whole, self.quarter)
            self._append(blocks.sum(axis=1))
            pos += whole * self.quarter
        if pos < squares.size:
            self.partial_sum += float(squares[pos:].sum())
            self.partial_count += squares.size - pos

    def integrated_lufs(self) -> float:
        energies = self.energies
        if energies.size >= 4:
            window = np.lib.stride_tricks.sliding_window_view(energies, 4)
            blocks = window.sum(axis=1) / (4 * self.quarter)
        else:
            # Shorter than one gating block: the whole signal is the only block.
            count = energies.size * self.quarter + self.partial_count
            if count == 0:
                return SILENCE_LUFS
            blocks = np.array([(energies.sum() + self.partial_sum) / count])
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10.0 * np.log10(blocks)
        gated = blocks[loudness >= ABSOLUTE_GATE_LUFS]
        if gated.size == 0:
            return SILENCE_LUFS
        relative = -0.691 + 10.0 * np.log10(gated.mean()) + RELATIVE_GATE_LU
        final = blocks[(loudness > relative) & (loudness > ABSOLUTE_GATE_LUFS)]
        if final.size == 0:
            return SILENCE_LUFS
        return float(-0.691 + 10.0 * np.log10(final.mean()))

    def state(self) -> dict[str, Float64Array | int | float]:
        return {
            "zi": self.zi.copy(),
            "energies": self.energies.copy(),
            "partial_sum": self.partial_sum,
            "partial_count": self.partial_count,
        }

    @classmethod
    def from_state(cls, rate: int, zi: Float64Array, energies: Float64Array,
                   partial_sum: float, partial_count: int) -> LoudnessMeter:
        m = cls(rate)
        m.zi = np.asarray(zi, dtype=np.float64).reshape(m.zi.shape).copy()
        m._append(np.asarray(energies, dtype=np.float64).reshape(-1))
        m.partial_sum = float(partial_sum)
        m.partial_count = int(partial_count)
        return m


__all__ = ["SILENCE_LUFS", "LoudnessMeter"]
