"""Time-stretching along a beat-to-beat time map, with audiotsm's WSOLA.

audiotsm (MIT) stretches at one speed at a time. To make the incoming song's beats land on the
outgoing song's beats, the analysis hop of every WSOLA frame is set from a piecewise-linear
time map (output time -> input time), so positions are taken from the map itself and errors
never accumulate. The waveform-similarity search runs once on the channel mean (same shift
for every channel keeps the stereo image) and by FFT, which makes it about ten times faster
than audiotsm's per-channel direct correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from audiotsm.base import AnalysisSynthesisTSM, Converter
from audiotsm.io.array import ArrayReader, ArrayWriter
from audiotsm.utils.windows import hanning
from scipy import fft as sfft

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

FRAME_LENGTH = 1024
SYNTHESIS_HOP = FRAME_LENGTH // 2
# Largest shift of a frame from its place on the map: 256 samples (5.8 ms at 44.1 kHz)
# bounds the beat error WSOLA itself can add.
TOLERANCE = 256


@dataclass(frozen=True)
class TimeMap:
    """Piecewise-linear map from output seconds to input seconds (both increasing).

    Outside the anchors the map continues with the slope of its first or last piece.
    """

    output_s: F64
    input_s: F64

    def __post_init__(self) -> None:
        if self.output_s.shape != self.input_s.shape or self.output_s.size < 2:
            raise ValueError("a time map needs two or more matching anchors")
        if np.any(np.diff(self.output_s) <= 0) or np.any(np.diff(self.input_s) <= 0):
            raise ValueError("time map anchors must increase strictly")

    def to_input(self, t_out: F64) -> F64:
        return _extrapolate(t_out, self.output_s, self.input_s)

    def to_output(self, t_in: F64) -> F64:
        return _extrapolate(t_in, self.input_s, self.output_s)

    def speed_at(self, t_out: F64) -> F64:
        """Input seconds per output second (>1 plays faster than the original)."""
        slopes = np.diff(self.input_s) / np.diff(self.output_s)
        idx = np.clip(np.searchsorted(self.output_s, t_out, side="right") - 1, 0, slopes.size - 1)
        out: F64 = slopes[idx]
        return out

    @classmethod
    def constant(cls, speed: float, input_start_s: float = 0.0) -> TimeMap:
        return cls(np.array([0.0, 1.0]), np.array([input_start_s, input_start_s + speed]))


def _extrapolate(x: F64, xp: F64, fp: F64) -> F64:
    y = np.interp(x, xp, fp)
    lo, hi = x < xp[0], x > xp[-1]
    y[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    y[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out: F64 = y
    return out


class _SharedShiftWSOLA(Converter):  # type: ignore[misc]
    """WSOLA frame converter: one FFT cross-correlation on the channel mean per frame."""

    def __init__(self, channels: int) -> None:
        self._channels = channels
        self._first = True
        self._natural = np.zeros((channels, FRAME_LENGTH))
        self._frame = np.empty((channels, FRAME_LENGTH))
        span = FRAME_LENGTH + 2 * TOLERANCE
        self._nfft = sfft.next_fast_len(span + FRAME_LENGTH, real=True)
        offsets = (np.arange(2 * TOLERANCE + 1) - TOLERANCE) / TOLERANCE
        self._centre_bias = 1.0 - 0.3 * offsets**2

    def clear(self) -> None:
        self._first = True

    def convert_frame(self, analysis_frame: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._first:
            delta = TOLERANCE
            self._first = False
        else:
            search = analysis_frame[:, : FRAME_LENGTH + 2 * TOLERANCE].mean(axis=0)
            ref = self._natural.mean(axis=0)
            spec = sfft.rfft(search, self._nfft) * np.conj(sfft.rfft(ref, self._nfft))
            corr = sfft.irfft(spec, self._nfft)[: 2 * TOLERANCE + 1]
            # Plain WSOLA drifts to any shift within the tolerance and stays there (in silence
            # every shift ties and argmax picks the first); favouring the centre keeps frames
            # near their place on the map, which is what keeps beats on the grid.
            peak = float(corr.max())
            delta = int(np.argmax(np.where(corr > 0, corr * self._centre_bias, corr))) \
                if peak > 1e-9 * max(float(np.dot(ref, ref)), 1e-12) else TOLERANCE
        self._frame[:] = analysis_frame[:, delta : delta + FRAME_LENGTH]
        nat = delta + SYNTHESIS_HOP
        self._natural[:] = analysis_frame[:, nat : nat + FRAME_LENGTH]
        return self._frame


class _MappedTSM(AnalysisSynthesisTSM):  # type: ignore[misc]
    """WSOLA whose analysis hop follows a time map, frame by frame."""

    def __init__(self, channels: int, centres: npt.NDArray[np.int64]) -> None:
        super().__init__(
            _SharedShiftWSOLA(channels), channels, FRAME_LENGTH, int(centres[1] - centres[0]),
            SYNTHESIS_HOP, None, hanning(FRAME_LENGTH), TOLERANCE, TOLERANCE + SYNTHESIS_HOP,
        )
        self._centres = centres
        self._k = 0

    def _process_frame(self) -> None:
        super()._process_frame()
        self._k += 1
        k = min(self._k, self._centres.size - 2)
        hop = int(self._centres[k + 1] - self._centres[k])
        self._analysis_hop = hop
        self._converter.set_analysis_hop(hop)


def stretch(audio: FloatArray, rate_hz: int, time_map: TimeMap, output_frames: int) -> FloatArray:
    """Renders `output_frames` samples of `audio` ([channels, frames]) played along `time_map`.

    Output sample t holds the input near `time_map.to_input(t / rate_hz)`. Input before the
    start or after the end of `audio` is silence.
    """
    channels = audio.shape[0]
    n_frames = output_frames // SYNTHESIS_HOP + 4
    out_t = np.arange(n_frames + 1, dtype=np.float64) * SYNTHESIS_HOP / rate_hz
    centres = np.round(time_map.to_input(out_t) * rate_hz).astype(np.int64)
    hops = np.diff(centres)
    if hops.min() < 1 or hops.max() >= FRAME_LENGTH:
        raise ValueError("time map speed must stay between 0.002 and 1.99")
    # Frame 0 is centred on input sample 0 of the padded signal: pad or trim so that
    # input sample centres[0] comes first.
    start = int(centres[0])
    need = int(centres[-1]) + FRAME_LENGTH + TOLERANCE + SYNTHESIS_HOP
    src = np.zeros((channels, max(need - start, 1)), dtype=np.float64)
    lo, hi = max(start, 0), min(need, audio.shape[1])
    if hi > lo:
        src[:, lo - start : hi - start] = audio[:, lo:hi]
    tsm = _MappedTSM(channels, centres - start)
    writer = ArrayWriter(channels)
    tsm.run(ArrayReader(src), writer)
    data = writer.data
    out = np.zeros((channels, output_frames), dtype=np.float32)
    n = min(output_frames, data.shape[1])
    out[:, :n] = data[:, :n]
    return out
