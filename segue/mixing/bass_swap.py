"""The EQ bass swap: on which downbeat the low band changes hands, and how fast.

In one sentence: the bass passes from the outgoing song to the incoming one over two bars,
crossing on the downbeat (of the middle three quarters of the overlap) where the mix is
predicted to change sound least.

Why that downbeat: the low band is most of the energy of club music, and a song's bass line
changes on its own (a new note, the line coming in or stopping). While both bass lines play,
as in a plain crossfade, the other line half hides each change; once the bass is swapped,
each change is heard whole. On the benchmark's real tracks that, not the handover itself,
was where swapped transitions changed most: with the previous swap (a one-bar ramp on a
downbeat of the middle half, placed by bass power alone), the worst seam of 18 of the 19
pairs lay outside the ramp, on a song's own change (bench/bench_mixer.py, 2026-11-21). So
the swap goes where its ramp covers such a change, or where it leaves the bass with the
song whose line holds steady, as a DJ brings the incoming bass in where its line starts and
keeps the outgoing one while it holds. The two-bar ramp (the lines cross at -3 dB each on
the downbeat, and are both within 6 dB of full level for about half a bar) still keeps two
kick drums from playing together at full level.

The prediction: the mix's spectrum, frame by frame, from each song's magnitude spectrum
weighted by its band gains (the fader above the crossover, the bass gain below it, joined
by the crossover's weights) and summed in power, as two unrelated songs add; then the
spectral-continuity metric's half-second windows either side of every seam of the overlap
(`quality.seam_means`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window

from .curves import swap_gains
from .eq import low_band_weight
from .length_reason import BassSwapPlace
from .plan import Overlap
from .quality import SEAM_HOP_S, SEAM_WINDOW_S, seam_frames, seam_means

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
# Fade gains (outgoing, incoming) at overlap positions x, as the mix applies them.
Fade = Callable[[FloatArray], tuple[FloatArray, FloatArray]]

# Bars over which the bass passes from A to B, centred on the swap downbeat.
SWAP_BARS = 2.0
# Downbeats this far from the middle of the overlap, as a share of its length, may take the
# swap (the middle three quarters): nearer an end, one song's bass would play under the
# other's sound for nearly the whole overlap.
CANDIDATE_REACH = 0.375
# The prediction's frames: the metric's 2048-point spectra (21.5 Hz apart, which tells bass
# notes apart), at twice its hop, which is plenty to rank a few downbeats.
_N_FFT = 2048
_HOP_FACTOR = 2
# Bins whose crossover weight is below this follow the faders alone (above ~850 Hz).
_LOW_WEIGHT = 1e-3
# Steps within 5% of each other tie, and the next largest decides (the largest is often a
# song's own change that no swap can move), then nearness to the middle.
_TIE_RATIO = 0.05
_STEPS_COMPARED = 3


def swap_candidates(overlap: Overlap) -> F64:
    """A's downbeats where the bass may change hands (half a beat of slack for a wobbly grid)."""
    ov0, ov1 = overlap.start_s, overlap.end_s
    reach = CANDIDATE_REACH * (ov1 - ov0) + 0.5 * overlap.beat_period_s
    out: F64 = overlap.downbeats_s[np.abs(overlap.downbeats_s - 0.5 * (ov0 + ov1)) <= reach]
    return out


def bass_swap_gains(
    overlap: Overlap, x: FloatArray, swap_s: float
) -> tuple[FloatArray, FloatArray]:
    """Low-band gains of A and B at overlap positions x: a SWAP_BARS ramp centred on swap_s.

    The ramp is SWAP_BARS of A's bars long, shorter when the swap sits nearer an end of the
    overlap than half of that, so that it always ends inside the overlap.
    """
    length = overlap.end_s - overlap.start_s
    at = (swap_s - overlap.start_s) / length
    bars = SWAP_BARS * overlap.beats_per_bar * overlap.beat_period_s / length
    width = min(bars, 2.0 * at, 2.0 * (1.0 - at))
    return swap_gains(x, at, max(width, 1e-3))


def swap_place(overlap: Overlap, swap_s: float) -> BassSwapPlace:
    """Where the swap at `swap_s` (output time) lies, in bars, for the length reason."""
    bar = round((swap_s - overlap.start_s) / overlap.bar_s)
    return BassSwapPlace(SWAP_BARS, bar, overlap.bars)


def choose_bass_swap(
    overlap: Overlap,
    rate: int,
    songs: tuple[FloatArray, FloatArray],
    levels: tuple[float, float],
    fade: Fade,
) -> float:
    """The candidate downbeat whose swap leaves the smallest predicted spectral step.

    `songs` are A and B on the output's time axis (`rate` Hz), before their gains;
    `levels` their loudness gains and `fade` the mix's fader curves. Each candidate's largest
    steps (spectral convergence between the half-seconds either side of every seam of the
    overlap) are compared; without candidates the swap is at the middle.
    """
    ov0, ov1 = overlap.start_s, overlap.end_s
    middle = 0.5 * (ov0 + ov1)
    candidates = swap_candidates(overlap)
    if candidates.size <= 1:
        return float(candidates[0]) if candidates.size else middle
    a_sig, b_stem = songs
    hop = _HOP_FACTOR * int(SEAM_HOP_S * rate / 4)
    win = max(1, round(SEAM_WINDOW_S * rate / hop))
    reach = SEAM_WINDOW_S + SEAM_HOP_S
    first = max(0, int((ov0 - reach) * rate))
    last = min(a_sig.shape[1], int((ov1 + reach) * rate) + _N_FFT)
    spec_a = _magnitudes(a_sig[:, first:last], hop) * np.float32(levels[0])
    spec_b = _magnitudes(b_stem[:, first:last], hop) * np.float32(levels[1])
    frames = spec_a.shape[1]
    times = (first + 0.5 * _N_FFT + hop * np.arange(frames)) / rate
    ks = seam_frames(times, ov0, ov1, win, frames)
    if ks.size == 0:
        return float(candidates[np.argmin(np.abs(candidates - middle))])
    x = ((times - ov0) / (ov1 - ov0)).astype(np.float32)
    fade_a, fade_b = fade(x)
    weight = low_band_weight(np.arange(spec_a.shape[0]) * rate / _N_FFT)
    low = weight >= _LOW_WEIGHT
    # Above the crossover the faders alone act: the same for every candidate.
    high_before, high_after = seam_means(
        np.hypot(fade_a * spec_a[~low], fade_b * spec_b[~low]), ks, win
    )
    high_change = np.sum(np.square(high_after - high_before), axis=1)
    high_norm = np.sum(np.square(high_before), axis=1)
    w = weight[low, None].astype(np.float32)
    keys: list[tuple[int, ...]] = []
    for c in candidates:
        bass_a, bass_b = bass_swap_gains(overlap, x, float(c))
        amp_a = (fade_a + (bass_a - fade_a) * w) * spec_a[low]
        amp_b = (fade_b + (bass_b - fade_b) * w) * spec_b[low]
        before, after = seam_means(np.hypot(amp_a, amp_b), ks, win)
        change = np.sum(np.square(after - before), axis=1) + high_change
        norm = np.sum(np.square(before), axis=1) + high_norm
        step = np.sqrt(change / np.maximum(norm, 1e-24))
        largest = np.sort(step)[::-1][:_STEPS_COMPARED]
        buckets = np.round(np.log(np.maximum(largest, 1e-9)) / math.log1p(_TIE_RATIO))
        keys.append(tuple(int(v) for v in buckets))
    order = sorted(range(candidates.size), key=lambda i: (keys[i], abs(candidates[i] - middle)))
    return float(candidates[order[0]])


def _magnitudes(audio: FloatArray, hop: int) -> FloatArray:
    """Magnitude spectra [bins, frames] of the channels' mean, Hann-windowed like the metric's."""
    mono = audio.mean(axis=0, dtype=np.float32)
    if mono.size < _N_FFT:
        return np.zeros((_N_FFT // 2 + 1, 0), dtype=np.float32)
    frames = sliding_window_view(mono, _N_FFT)[::hop]
    spec = scipy.fft.rfft(frames * _hann(), axis=1)
    out: FloatArray = np.abs(spec).T
    return out


@lru_cache(maxsize=1)
def _hann() -> FloatArray:
    window: FloatArray = get_window("hann", _N_FFT).astype(np.float32)
    return window
