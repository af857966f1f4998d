"""Cheap pitch-class profiles (chroma) of short PCM frames, for key and section analysis:
the amplitudes of each frame's spectral peaks, summed per pitch class."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft

F32 = npt.NDArray[np.float32]

# Chroma frames per second of audio; each frame analyses a centred excerpt of FFT_S seconds.
# Peaks interpolated between bins read keys from 93 ms excerpts as well as from 186 ms ones
# (rendered-MIDI tuning split and prompted recordings), at half the FFT's cost.
FRAMES_PER_S = 4
FFT_S = 2048 / 22050
FMIN_HZ = 55.0
FMAX_HZ = 1760.0
TUNING_A4_HZ = 440.0
# Each excerpt is summed in groups of samples down to this many before its FFT. Chroma needs
# nothing above FMAX_HZ, so the sum (a box low-pass) keeps every bin it uses at the same
# spacing for a quarter of the FFT; what it folds down from above 3.7 kHz is weak in music
# (tests/test_structure_chroma.py compares it with the full FFT's).
DECIMATED_FFT = 512
# Floors of log10 chroma energy and of mean square level.
CHROMA_FLOOR = 1e-6
LEVEL_FLOOR = 1e-12


def column_pitches(first_bin: int, n_bins: int, bin_hz: float) -> tuple[F32, F32]:
    """(MIDI pitch, its change per bin), both in semitones, of the columns that
    `peak_pitch_classes` reads: FFT bins first_bin - 1 ... first_bin + n_bins of `bin_hz` Hz.
    The outer two are only neighbours, so their change is 0."""
    bins = np.arange(first_bin - 1, first_bin + n_bins + 1, dtype=np.float64)
    semitones = (69.0 + 12.0 * np.log2(bins * bin_hz / TUNING_A4_HZ)).astype(np.float32)
    slopes = (12.0 / np.log(2.0) / bins).astype(np.float32)
    slopes[[0, -1]] = 0.0
    return semitones, slopes


def peak_pitch_classes(
    log_magnitude: F32, semitones: F32, slopes: F32, frames_per_window: int
) -> tuple[npt.NDArray[np.intp], F32]:
    """(frame * 12 + pitch class, weight) of each spectral peak of `log_magnitude` [frames,
    bins] (natural log).

    `semitones` [bins] is the MIDI pitch of each column's bin and `slopes` [bins] its change
    per bin (semitones); a column whose slope is 0 is only a neighbour, never a peak. A peak
    (a bin louder than both neighbours) is placed between bins by a parabola through the log
    magnitudes, and weighs its interpolated amplitude times cos² of its distance (semitones)
    from the nearest pitch of its window's own tuning (`tuning_offsets`; rows are frames, in
    windows of `frames_per_window`): partials between pitches, and noise, count little.
    """
    width = log_magnitude.shape[1]
    # Peaks are found on the rows laid end to end; a "peak" in an outer column (whose
    # neighbour is in another row) gets no weight, as its slope is 0.
    flat = log_magnitude.reshape(-1)
    centre = flat[1:-1]
    at = np.flatnonzero((centre > flat[:-2]) & (centre >= flat[2:])) + 1
    rows = at // width
    column = at - rows * width
    low, mid, high = flat[at - 1], flat[at], flat[at + 1]
    tilt = low - high
    # A peak is above both neighbours, so the parabola opens downwards: no division by zero.
    shift = np.float32(0.5) * tilt / (low + high - 2 * mid)
    slope = slopes[column]
    semitone = semitones[column] + slope * shift
    amplitude = np.exp(mid - np.float32(0.25) * tilt * shift) * (slope > 0)
    semitone -= tuning_offsets(rows // frames_per_window, semitone, amplitude)
    nearest = np.rint(semitone)
    weights: F32 = amplitude * np.square(np.cos(np.float32(np.pi) * (semitone - nearest)))
    return rows * 12 + nearest.astype(np.intp) % 12, weights


def tuning_offsets(windows: npt.NDArray[np.intp], semitone: F32, amplitude: F32) -> F32:
    """For each peak, how far (semitones, -0.5 to 0.5) the pitch grid of its window sits from
    A440's: the amplitude-weighted circular mean of the window's peaks' distance from it.
    `windows` numbers each peak's window (0, 1, ...).

    A recording tuned to 432 Hz sits a third of a semitone flat; read on A440's grid, its notes
    would weigh little against noise, whose peaks fall anywhere (and cancel in the mean). Each
    window has its own estimate, so that a window's chroma does not depend on which windows
    it was analysed with.
    """
    angle = np.float32(2.0 * np.pi) * semitone
    x = np.bincount(windows, amplitude * np.cos(angle))
    y = np.bincount(windows, amplitude * np.sin(angle))
    offsets: F32 = (np.arctan2(y, x) / (2.0 * np.pi)).astype(np.float32)
    out: F32 = offsets[windows]
    return out


class ChromaExtractor:
    """Log chroma energy and RMS level of the frames of PCM windows, in steps: per window
    `mean_square` and `decimate` (the excerpts, cheap), then `fold` (window, FFT and
    pitch-class fold, best run on many excerpts at once)."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.n_fft = 1 << max(8, round(np.log2(FFT_S * sample_rate_hz)))
        self.decimation = max(1, self.n_fft // DECIMATED_FFT)
        # Bin k of the short FFT of the decimated excerpt is bin k of the full-length FFT.
        self.excerpt_samples = self.n_fft // self.decimation
        self.window = np.hanning(self.excerpt_samples + 1)[:-1].astype(np.float32)
        self.bin_hz = sample_rate_hz / self.n_fft
        # Bins FMIN_HZ..FMAX_HZ, each with both neighbours (a peak needs them).
        self.first_bin = max(1, int(np.ceil(FMIN_HZ / self.bin_hz)))
        last_bin = int(np.floor(min(FMAX_HZ, sample_rate_hz / 2) / self.bin_hz))
        if last_bin + 1 > self.excerpt_samples // 2:
            raise ValueError(f"sample rate {sample_rate_hz} too low for chroma up to {FMAX_HZ}")
        self.n_bins = last_bin - self.first_bin + 1
        self._semitones, self._slopes = column_pitches(self.first_bin, self.n_bins, self.bin_hz)
        self._ones = np.ones(self.decimation, np.float32)

    def frame_count(self, n_samples: int) -> int:
        return max(1, round(n_samples * FRAMES_PER_S / self.sample_rate_hz))

    def frames_of(self, length: int) -> tuple[int, int]:
        """(frames, step): frame i of a window covers samples [i*step, (i+1)*step)."""
        n = self.frame_count(length)
        return n, length // n

    def mean_square(self, windows: F32) -> F32:
        """Mean square of each window [windows, samples]: the level is the whole window's,
        which loudness curves and key weights need no finer. A NaN or Inf sample makes its
        window's value non-finite."""
        if len(windows) == 1:
            out = np.asarray([np.dot(windows[0], windows[0])], np.float32)
        else:
            out = (windows[:, None, :] @ windows[:, :, None]).reshape(-1)
        out /= np.float32(windows.shape[1])
        return out

    def decimate(self, windows: F32, out: F32) -> None:
        """Writes the excerpts of windows [windows, samples] to out [windows * n,
        excerpt_samples], n = frame_count(samples).

        Frame i covers the part window[i*step : (i+1)*step] (the few samples after the last
        part are ignored); its chroma comes from the centred n_fft samples of the part,
        zero-padded when the part is shorter, summed in groups of `decimation` samples.
        """
        n, step = self.frames_of(windows.shape[1])
        parts = windows[:, : n * step].reshape(-1, step)
        if step >= self.n_fft:
            offset = (step - self.n_fft) // 2
            excerpt = parts[:, offset : offset + self.n_fft]
        else:
            pad = (self.n_fft - step) // 2
            excerpt = np.zeros((len(parts), self.n_fft), np.float32)
            excerpt[:, pad : pad + step] = parts
        grouped = excerpt.reshape(len(parts), self.excerpt_samples, self.decimation)
        np.matmul(grouped, self._ones, out=out)

    def fold(self, frames: F32, frames_per_window: int) -> F32:
        """log10 chroma energy [frames, 12] of prepared excerpts (windowed in place): the
        square of each pitch class's summed spectral-peak amplitude (peak_pitch_classes).
        Each `frames_per_window` consecutive excerpts are one window's, which share a tuning."""
        frames *= self.window
        spectrum = scipy.fft.rfft(frames, axis=1)
        magnitude = np.abs(spectrum[:, self.first_bin - 1 : self.first_bin + self.n_bins + 1])
        # The floor keeps digital silence finite.
        magnitude += np.float32(1e-20)
        np.log(magnitude, out=magnitude)
        slots, weights = peak_pitch_classes(
            magnitude, self._semitones, self._slopes, frames_per_window
        )
        amplitude = np.bincount(slots, weights, minlength=len(frames) * 12)
        out: F32 = np.square(amplitude, dtype=np.float32).reshape(len(frames), 12)
        out += np.float32(CHROMA_FLOOR)
        np.log10(out, out=out)
        return out

    def __call__(self, pcm: F32) -> F32:
        """[n, 13] per window of `pcm` ([samples] or [windows, samples], windows stacked) for
        n = frame_count(samples): log10 chroma energy, then the window's RMS level in dBFS."""
        windows = pcm.reshape(-1, pcm.shape[-1])
        n, _ = self.frames_of(windows.shape[1])
        frames = np.empty((len(windows) * n, self.excerpt_samples), np.float32)
        self.decimate(windows, frames)
        out = np.empty((len(frames), 13), np.float32)
        out[:, :12] = self.fold(frames, n)
        out[:, 12] = np.repeat(level_db(self.mean_square(windows)), n)
        return out


def level_db(mean_square: F32) -> F32:
    out: F32 = np.log10(mean_square + np.float32(LEVEL_FLOOR))
    out *= np.float32(10.0)
    return out
