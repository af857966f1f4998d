"""Quality metrics of a rendered transition (the QualityReport's numbers).

- Beat alignment: where the incoming song's beats actually sit in the stretched audio,
  found by cross-correlating each beat's neighbourhood in the original with the output, and
  their distance to the outgoing song's beat grid.
- Loudness step: short-term loudness (3 s, BS.1770) just before against just after the overlap.
- Spectral continuity: a crossfade has no single seam, so every point of the transition is
  treated as a candidate seam and the worst one counts: the change between the 0.5 s before
  and the 0.5 s after it, as spectral convergence ||S_after - S_before||_F / ||S_before||_F
  and as mel-spectrogram MSE (dB^2). S is the magnitude spectrogram of each window averaged
  over its frames: frame i before and frame i after the seam hold different music, so
  comparing them frame by frame would measure the rhythm (a kick against an off-beat) rather
  than the change of sound, which the averaged spectra isolate. The worst seam also catches
  the songs' own changes (a drop in B inside the overlap), so it rates the whole overlap, not
  only the mixing; the benchmark compares methods on the same overlaps for that reason. How
  much: half a second is about one beat, so a window with a snare against one without
  already differs, and on the benchmark's real tracks a song playing alone over the same
  window scores about as high as the transitions do (bench/results/mixer_*.md gives both).
  Differences between methods are therefore small against the music's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft
from scipy.signal import stft

from segue.loudness import short_term_lufs

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

SHORT_TERM_S = 3.0
SEAM_WINDOW_S = 0.5
SEAM_HOP_S = 0.1
N_MELS = 64
_BEAT_WINDOW_S = 0.06
_BEAT_SEARCH_S = 0.025


def measured_beat_positions(
    source: FloatArray, source_beats_s: F64, rendered: FloatArray, predicted_s: F64, rate_hz: int
) -> F64:
    """Where each source beat really landed in `rendered`, near its predicted time (NaN if unsure).

    Both signals are mono. Each beat's surroundings in the source are matched against the
    rendered signal within +-25 ms of the prediction by normalised cross-correlation (all
    beats in one batch of FFTs).
    """
    half = int(_BEAT_WINDOW_S * rate_hz)
    search = int(_BEAT_SEARCH_S * rate_hz)
    out = np.full(predicted_s.size, np.nan)
    s0 = np.round(source_beats_s * rate_hz).astype(np.int64) - half
    r0 = np.round(predicted_s * rate_hz).astype(np.int64) - half - search
    inside = (
        (s0 >= 0)
        & (r0 >= 0)
        & (s0 + 2 * half <= source.size)
        & (r0 + 2 * (half + search) <= rendered.size)
    )
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return out
    refs = source[s0[idx, None] + np.arange(2 * half)]
    segs = rendered[r0[idx, None] + np.arange(2 * (half + search))]
    ref_energy = np.einsum("ij,ij->i", refs, refs, dtype=np.float64)
    # The lags wanted never wrap around a transform as long as the segment.
    n_fft = int(scipy.fft.next_fast_len(segs.shape[1], real=True))
    corr = scipy.fft.irfft(
        scipy.fft.rfft(segs, n_fft, axis=1) * np.conj(scipy.fft.rfft(refs, n_fft, axis=1)),
        n_fft,
        axis=1,
    )[:, : 2 * search + 1]
    cum = np.concatenate(
        [np.zeros((idx.size, 1)), np.cumsum(np.square(segs, dtype=np.float64), axis=1)], axis=1
    )
    energy = cum[:, 2 * half :] - cum[:, : -2 * half]
    ncc = corr / np.sqrt(np.maximum(energy, 1e-12) * np.maximum(ref_energy, 1e-30)[:, None])
    k = np.argmax(ncc, axis=1)
    sure = (ncc[np.arange(idx.size), k] >= 0.5) & (ref_energy >= 1e-8)
    out[idx[sure]] = predicted_s[idx[sure]] + (k[sure] - search) / rate_hz
    return out


def beat_alignment_error_ms(measured_s: F64, reference_beats_s: F64) -> float:
    """Median distance (ms) from each measured beat to the nearest reference beat."""
    ok = measured_s[np.isfinite(measured_s)]
    if ok.size == 0 or reference_beats_s.size == 0:
        return float("nan")
    idx = np.clip(np.searchsorted(reference_beats_s, ok), 1, reference_beats_s.size - 1)
    dist = np.minimum(np.abs(ok - reference_beats_s[idx - 1]), np.abs(ok - reference_beats_s[idx]))
    return float(np.median(dist) * 1000.0)


def loudness_step_lu(audio: FloatArray, rate_hz: int, start_s: float, end_s: float) -> float:
    """|short-term loudness after the overlap - before it|, over up to 3 s on each side."""
    n = audio.shape[1]
    a0, a1 = max(0, int((start_s - SHORT_TERM_S) * rate_hz)), int(start_s * rate_hz)
    b0, b1 = int(end_s * rate_hz), min(n, int((end_s + SHORT_TERM_S) * rate_hz))
    if a1 - a0 < int(0.4 * rate_hz) or b1 - b0 < int(0.4 * rate_hz):
        # Too little context: compare the first and last 3 s of the output instead.
        w = min(int(SHORT_TERM_S * rate_hz), n // 2)
        a0, a1, b0, b1 = 0, w, n - w, n
    before = short_term_lufs(audio[:, a0:a1], rate_hz)
    after = short_term_lufs(audio[:, b0:b1], rate_hz)
    if not (np.isfinite(before) and np.isfinite(after)):
        return float("nan")
    return float(abs(after - before))


def mel_filterbank(rate_hz: int, n_fft: int, n_mels: int = N_MELS) -> F64:
    """Triangular mel filters (HTK mel scale), shape [n_mels, n_fft // 2 + 1]."""

    def hz_to_mel(f: F64) -> F64:
        out: F64 = 2595.0 * np.log10(1.0 + f / 700.0)
        return out

    edges_mel = np.linspace(
        hz_to_mel(np.array(30.0)), hz_to_mel(np.array(rate_hz / 2.0)), n_mels + 2
    )
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.linspace(0.0, rate_hz / 2.0, n_fft // 2 + 1)
    bank = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, 1)
    return bank


@dataclass(frozen=True)
class WorstSeams:
    """The largest spectral steps over the candidate seams, and where they are."""

    convergence: float
    convergence_at_s: float  # the seam's time (NaN when no seam fits)
    mel_mse: float  # dB^2
    mel_mse_at_s: float


def spectral_continuity(
    audio: FloatArray, rate_hz: int, start_s: float, end_s: float
) -> tuple[float, float]:
    """(worst spectral convergence, worst mel MSE in dB^2) over seams in [start_s, end_s]."""
    worst = worst_seams(audio, rate_hz, start_s, end_s)
    return worst.convergence, worst.mel_mse


def worst_seams(audio: FloatArray, rate_hz: int, start_s: float, end_s: float) -> WorstSeams:
    """The worst seams in [start_s, end_s] by spectral convergence and by mel MSE.

    Only the audio the windows reach is analysed, cut at a multiple of the hop so that the
    frames are the ones the whole output would give.
    """
    none = WorstSeams(0.0, float("nan"), 0.0, float("nan"))
    n_fft = 2048
    hop = int(SEAM_HOP_S * rate_hz / 4)
    reach = SEAM_WINDOW_S + SEAM_HOP_S
    first = max(0, int((start_s - reach) * rate_hz) // hop * hop)
    last = min(audio.shape[1], int((end_s + reach) * rate_hz) + n_fft)
    mono = audio[:, first:last].mean(axis=0, dtype=np.float32)
    if mono.size < n_fft:
        return none
    freqs, times, spec = stft(
        mono, fs=rate_hz, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False
    )
    del freqs
    times = times + first / rate_hz
    mag = np.abs(spec)
    bank = _mel_bank(rate_hz, n_fft)
    win = max(1, round(SEAM_WINDOW_S * rate_hz / hop))
    ks = seam_frames(times, start_s, end_s, win, mag.shape[1])
    if ks.size == 0:
        return none
    before, after = seam_means(mag, ks, win)
    sc = np.linalg.norm(after - before, axis=1) / np.maximum(np.linalg.norm(before, axis=1), 1e-12)
    mel_b = 10.0 * np.log10(before**2 @ bank.T + 1e-10)
    mel_a = 10.0 * np.log10(after**2 @ bank.T + 1e-10)
    mel = np.mean((mel_a - mel_b) ** 2, axis=1)
    i, j = int(np.argmax(sc)), int(np.argmax(mel))
    return WorstSeams(float(sc[i]), float(times[ks[i]]), float(mel[j]), float(times[ks[j]]))


def seam_frames(
    times: F64, start_s: float, end_s: float, win: int, n_frames: int
) -> npt.NDArray[np.int64]:
    """Frame index of each candidate seam, every SEAM_HOP_S from start_s to end_s.

    Only seams with `win` frames on either side among the `n_frames` frames at `times`.
    """
    seams = np.arange(start_s, end_s + 1e-9, SEAM_HOP_S)
    ks = np.searchsorted(times, seams)
    out: npt.NDArray[np.int64] = ks[(ks - win >= 0) & (ks + win <= n_frames)]
    return out


def seam_means(mag: FloatArray | F64, ks: npt.NDArray[np.int64], win: int) -> tuple[F64, F64]:
    """Mean spectra [seams, bins] of the `win` frames before and after each seam frame.

    Every seam at once, from cumulative sums over the frames of `mag` [bins, frames].
    """
    cum = np.concatenate([np.zeros((mag.shape[0], 1)), np.cumsum(mag, axis=1, dtype=np.float64)], 1)
    before: F64 = ((cum[:, ks] - cum[:, ks - win]) / win).T
    after: F64 = ((cum[:, ks + win] - cum[:, ks]) / win).T
    return before, after


@lru_cache(maxsize=4)
def _mel_bank(rate_hz: int, n_fft: int) -> F64:
    return mel_filterbank(rate_hz, n_fft)
