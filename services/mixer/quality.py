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
  only the mixing; the benchmark compares methods on the same overlaps for that reason.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import correlate, stft

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
    rendered signal within +-25 ms of the prediction by normalised cross-correlation.
    """
    half = int(_BEAT_WINDOW_S * rate_hz)
    search = int(_BEAT_SEARCH_S * rate_hz)
    out = np.full(predicted_s.size, np.nan)
    for i, (b, p) in enumerate(zip(source_beats_s, predicted_s, strict=True)):
        s0, r0 = round(b * rate_hz) - half, round(p * rate_hz) - half - search
        if (
            s0 < 0
            or r0 < 0
            or s0 + 2 * half > source.size
            or r0 + 2 * (half + search) > rendered.size
        ):
            continue
        ref = source[s0 : s0 + 2 * half].astype(np.float64)
        seg = rendered[r0 : r0 + 2 * (half + search)].astype(np.float64)
        if np.dot(ref, ref) < 1e-8:
            continue
        corr = correlate(seg, ref, mode="valid", method="fft")
        cum = np.concatenate([[0.0], np.cumsum(seg * seg)])
        energy = cum[ref.size :] - cum[: -ref.size]
        ncc = corr / np.sqrt(np.maximum(energy, 1e-12) * np.dot(ref, ref))
        k = int(np.argmax(ncc))
        if ncc[k] < 0.5:
            continue
        out[i] = p + (k - search) / rate_hz
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


def spectral_continuity(
    audio: FloatArray, rate_hz: int, start_s: float, end_s: float
) -> tuple[float, float]:
    """(worst spectral convergence, worst mel MSE in dB^2) over seams in [start_s, end_s]."""
    mono = audio.mean(axis=0).astype(np.float64)
    n_fft = 2048
    hop = int(SEAM_HOP_S * rate_hz / 4)
    freqs, times, spec = stft(
        mono, fs=rate_hz, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False
    )
    del freqs
    mag = np.abs(spec)
    bank = mel_filterbank(rate_hz, n_fft)
    win = max(1, round(SEAM_WINDOW_S * rate_hz / hop))
    worst_sc, worst_mel = 0.0, 0.0
    for seam in np.arange(start_s, end_s + 1e-9, SEAM_HOP_S):
        k = int(np.searchsorted(times, seam))
        if k - win < 0 or k + win > mag.shape[1]:
            continue
        before = mag[:, k - win : k].mean(axis=1)
        after = mag[:, k : k + win].mean(axis=1)
        sc = float(np.linalg.norm(after - before)) / max(float(np.linalg.norm(before)), 1e-12)
        mel_b = 10.0 * np.log10(bank @ (before**2) + 1e-10)
        mel_a = 10.0 * np.log10(bank @ (after**2) + 1e-10)
        mel = float(np.mean((mel_a - mel_b) ** 2))
        worst_sc, worst_mel = max(worst_sc, sc), max(worst_mel, mel)
    return worst_sc, worst_mel
