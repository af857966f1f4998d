"""Streaming polyphase resampling whose output does not depend on how the input is chunked.

Output sample n is a fixed dot product of a windowed-sinc filter phase with the input samples
around time n / rate_out (scipy's polyphase FIR kernel, in C), computed the same way whether
the input arrives in one piece or in many: pushing chunks and then calling `finish()` gives
exactly (bit for bit) the output of one `push(everything)` + `finish()`. The filter is
zero-phase (centred), so output time t matches input time t; the input is taken as silence
before its first and after its last sample.

The whole state (counters and the input history the next outputs need) is exported by
`state()` so a stream can be checkpointed and resumed on another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import gcd

import numpy as np
import numpy.typing as npt
from scipy.signal import firwin

# scipy's polyphase FIR kernel (what scipy.signal.upfirdn runs), kept per filter: upfirdn
# re-orders the whole prototype on every call, which for rates with a large up factor (22051
# Hz: 705,600 taps) costs far more than the filtering. scipy is pinned exactly;
# tests/test_embedder_resample.py holds the two equal.
from scipy.signal._upfirdn import _UpFIRDn

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

# Filter zero crossings on each side of the centre: ~16 gives > 80 dB stop-band with Kaiser 8.6.
ZERO_CROSSINGS = 16
KAISER_BETA = 8.6
# Pass band edge as a fraction of the lower Nyquist frequency.
ROLLOFF = 0.94
# Outputs computed per vectorised block: bounds temporary memory on very long pushes.
BLOCK_OUTPUTS = 8192


@dataclass(frozen=True)
class _Filter:
    up: int  # L
    down: int  # M
    delay: int  # centre of the prototype filter, in upsampled samples
    taps: int  # input samples each output reads (taps per phase)
    # An input index a with a * up = delay (mod down): where upfirdn's output grid meets the
    # outputs' centres (up and down are coprime, so one exists in every `down` indices).
    aligned: int
    prototype: Float64Array  # [L * taps]: L * h, zero-padded to whole phases
    kernel: _UpFIRDn  # upfirdn of the prototype, up L, down M, float64


@lru_cache(maxsize=32)
def _design(rate_in: int, rate_out: int) -> _Filter:
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    factor = max(up, down)
    length = 2 * ZERO_CROSSINGS * factor + 1
    h = firwin(length, ROLLOFF / factor, window=("kaiser", KAISER_BETA))
    taps = -(-length // up)
    padded = np.zeros(taps * up, dtype=np.float64)
    padded[:length] = h * up
    delay = (length - 1) // 2
    aligned = (delay * pow(up, -1, down)) % down if down > 1 else 0
    return _Filter(up=up, down=down, delay=delay, taps=taps, aligned=aligned, prototype=padded,
                   kernel=_UpFIRDn(padded, np.float64, up, down))


@dataclass(frozen=True)
class ResamplerState:
    """Everything a resampler needs to continue exactly where it stopped."""

    rate_in: int
    rate_out: int
    consumed: int  # input samples pushed so far
    produced: int  # output samples returned so far
    history_start: int  # absolute input index of history[0] (negative = leading silence)
    history: FloatArray  # input samples the next outputs still need
    finished: bool


class StreamingResampler:
    """Converts mono float32 audio from rate_in to rate_out, chunk by chunk."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._passthrough = rate_in == rate_out
        self._filter = None if self._passthrough else _design(rate_in, rate_out)
        taps = 0 if self._filter is None else self._filter.taps
        self._consumed = 0
        self._produced = 0
        # Leading silence so the first outputs' taps have samples to read.
        self._history_start = -taps
        self._history = np.zeros(taps, dtype=np.float32)
        self._finished = False

    @property
    def consumed(self) -> int:
        return self._consumed

    @property
    def produced(self) -> int:
        return self._produced

    def total_outputs(self) -> int:
        """Outputs the input pushed so far yields in all, once finished."""
        return -(-self._consumed * self.rate_out // self.rate_in)

    def push(self, samples: FloatArray) -> FloatArray:
        """Feeds input; returns every output sample that this input completes."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._consumed += samples.size
        if self._passthrough:
            self._produced += samples.size
            return samples.copy()
        self._history = np.concatenate([self._history, samples])
        return self._drain(self._ready_outputs())

    def finish(self) -> FloatArray:
        """Flushes the outputs that need silence after the end of the input."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        if self._passthrough or self._filter is None:
            return np.zeros(0, dtype=np.float32)
        pad = self._filter.delay // self._filter.up + self._filter.taps + 1
        self._history = np.concatenate([self._history, np.zeros(pad, dtype=np.float32)])
        return self._drain(self.total_outputs())

    def _ready_outputs(self) -> int:
        """Outputs whose newest tap falls inside the input received so far (exclusive end)."""
        f = self._filter
        assert f is not None
        # Output n needs input index (n*M + D) // L, which must be < consumed.
        limit = self._consumed * f.up - f.delay
        if limit <= 0:
            return self._produced
        return max(self._produced, -(-limit // f.down))

    def _drain(self, end: int) -> FloatArray:
        f = self._filter
        assert f is not None
        start = self._produced
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        out = np.empty(end - start, dtype=np.float32)
        for block in range(start, end, BLOCK_OUTPUTS):
            stop = min(end, block + BLOCK_OUTPUTS)
            out[block - start : stop - start] = self._outputs(block, stop)
        self._produced = end
        self._trim()
        return out

    def _outputs(self, first: int, stop: int) -> Float64Array:
        """Outputs first..stop-1, each the dot product of its filter phase with the input
        history, summed oldest sample first (scipy's polyphase upfirdn, in C).

        upfirdn's output m sits at upsampled index m * down of its input; the input handed to
        it starts at the latest absolute index `a` at or before the first output's oldest tap
        with a * up = delay (mod down), so that output n is its output n + (delay - a*up)/down.
        Every output is then summed from the same samples in the same order wherever it falls
        in a push, which keeps the result independent of the chunking, bit for bit.
        """
        f = self._filter
        assert f is not None
        oldest = (first * f.down + f.delay) // f.up - f.taps + 1
        newest = ((stop - 1) * f.down + f.delay) // f.up
        a = oldest - (oldest - f.aligned) % f.down
        lo = a - self._history_start
        segment = np.zeros(newest + 1 - a, dtype=np.float64)
        # Indices before the history (only when `a` precedes the leading silence) stay 0.
        segment[max(0, -lo) :] = self._history[max(0, lo) : newest + 1 - self._history_start]
        offset = first + (f.delay - a * f.up) // f.down
        full: Float64Array = f.kernel.apply_filter(segment)
        return full[offset : offset + stop - first]

    def _trim(self) -> None:
        f = self._filter
        assert f is not None
        oldest_needed = (self._produced * f.down + f.delay) // f.up - f.taps + 1
        drop = oldest_needed - self._history_start
        if drop > 0:
            self._history = self._history[drop:].copy()
            self._history_start += drop

    def state(self) -> ResamplerState:
        return ResamplerState(
            rate_in=self.rate_in,
            rate_out=self.rate_out,
            consumed=self._consumed,
            produced=self._produced,
            history_start=self._history_start,
            history=self._history.copy(),
            finished=self._finished,
        )

    @classmethod
    def from_state(cls, state: ResamplerState) -> StreamingResampler:
        r = cls(state.rate_in, state.rate_out)
        r._consumed = state.consumed
        r._produced = state.produced
        r._history_start = state.history_start
        r._history = np.asarray(state.history, dtype=np.float32).copy()
        r._finished = state.finished
        return r


def resample(samples: FloatArray, rate_in: int, rate_out: int) -> FloatArray:
    """One offline pass of the streaming resampler over a whole signal."""
    r = StreamingResampler(rate_in, rate_out)
    head = r.push(samples)
    return np.concatenate([head, r.finish()])


__all__ = ["ResamplerState", "StreamingResampler", "resample"]
