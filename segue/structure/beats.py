"""Beat tracking by dynamic programming over the onset envelope (after Ellis 2007)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Penalty on log(interval / period)^2 between consecutive beats.
TIGHTNESS = 100.0
# Inter-beat intervals considered, relative to the local period (the penalty reaches 8 at
# the ends). The local period already follows tempo changes, so wider ranges only let the
# grid jump phase, and cost time: from 2/3-3/2, they changed no beat of the generated sets.
MIN_RATIO = 0.75
MAX_RATIO = 4.0 / 3.0
# Thresholds of metrical_level (ratios of median onset strengths).
HALVE_RATIO = 0.2
DOUBLE_RATIO = 0.85
# A backbeat halfway between the tracked beats: strong over all bands, weak in the bass.
BACKBEAT_FULL_RATIO = 0.45
BACKBEAT_LOW_RATIO = 0.6
# Leading and trailing beats weaker than this share of the RMS beat strength are dropped.
TRIM_SHARE = 0.2


def track_beats(onset: F32, local_period: F64, fps: float) -> F64:
    """Beat times (s) that fall on strong onsets and stay close to the local beat period."""
    return track_beats_on_each([onset], local_period, fps)[0]


def track_beats_on_each(onsets: Sequence[F32], local_period: F64, fps: float) -> list[F64]:
    """`track_beats` on each of several envelopes of one song at one local period, in one
    pass: the recursion's steps cost the same for one envelope or a few.

    Frames are processed in blocks shorter than the shortest allowed interval, so each block
    only reads scores that are final; this keeps the recursion vectorised, with the
    penalties of all frames computed up front.
    """
    n = len(onsets[0]) if onsets else 0
    if n == 0 or not np.any(local_period > 0):
        return [np.zeros(0) for _ in onsets]
    period = np.maximum(local_period, 2.0)
    local = np.stack([o.astype(np.float64) for o in onsets])
    min_offset = max(1, int(np.ceil(MIN_RATIO * period.min())))
    max_offset = max(min_offset, int(np.floor(MAX_RATIO * period.max())))
    # Offsets fall along the columns, so that row f of a sliding window over the scores
    # (padded in front) holds those of frames f - max_offset ... f - min_offset in column
    # order: every frame's candidate predecessors, as a view that follows the updates.
    offsets = np.arange(max_offset, min_offset - 1, -1)
    frames = np.arange(n)
    penalty = _interval_penalty(offsets, period)
    head = min(n, max_offset)  # frames with fewer than max_offset frames before them
    penalty[:head][frames[:head, None] < offsets[None, :]] = -np.inf
    padded = np.zeros((len(onsets), max_offset + n))
    padded[:, max_offset:] = local
    score = padded[:, max_offset:]
    earlier = np.lib.stride_tricks.sliding_window_view(padded, len(offsets), axis=1)[:, :n]
    # A block shorter than the shortest offset only reads scores of earlier blocks, so only
    # the best value is needed inside the loop; the links are recovered afterwards.
    for start in range(0, n, min_offset):
        stop = min(n, start + min_offset)
        best_value = (earlier[:, start:stop] + penalty[start:stop]).max(axis=2)
        score[:, start:stop] += np.maximum(best_value, 0.0)
    out = []
    for k in range(len(onsets)):
        candidate = earlier[k] + penalty
        # Read from the shortest offset, so that a tie goes to the shortest interval.
        best = len(offsets) - 1 - candidate[:, ::-1].argmax(axis=1)
        back = np.where(candidate[frames, best] > 0, frames - offsets[best], -1)
        out.append(_best_path(score[k], back, local[k]) / fps)
    return out


def _best_path(score: F64, back: npt.NDArray[np.int64], onset: F64) -> F64:
    """Beat frames (fractional) of the best path: back from the last strong peak of the
    cumulative score, trimmed of silence, refined and regularised where the onsets are weak."""
    is_peak = np.r_[False, (score[1:-1] > score[:-2]) & (score[1:-1] >= score[2:]), False]
    peaks = np.flatnonzero(is_peak)
    if len(peaks) == 0:
        return np.zeros(0)
    threshold = 0.5 * np.median(score[peaks])
    strong = peaks[score[peaks] >= threshold]
    last = int(strong[-1])
    # The path ends on the best-scoring strong peak after the last one's predecessor: a late
    # weak peak (an off-beat in a song's last second) reached through cheap, squeezed
    # intervals would otherwise bend the grid's last beats.
    ending = strong[strong > back[last]]
    last = int(ending[np.argmax(score[ending])])
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    frames_out = np.asarray(beats[::-1])
    frames_out = _trim_silence(frames_out, onset)
    refined = _refine(frames_out, onset)
    return _regularise_weak(refined, onset[frames_out])


def _interval_penalty(offsets: npt.NDArray[np.int64], period: F64) -> F64:
    """[frames, offsets]: -TIGHTNESS * log(offset / period)^2, -inf outside the allowed
    ratios (the bounds themselves allowed)."""
    log_ratio = np.log(offsets)[None, :] - np.log(period)[:, None]
    penalty = log_ratio * log_ratio
    penalty *= -TIGHTNESS
    # The margin keeps ratios exactly at a bound (an offset of 30 at a period of 22.5)
    # allowed despite the rounding of the logarithms.
    low, high = np.log(MIN_RATIO) - 1e-9, np.log(MAX_RATIO) + 1e-9
    penalty[(log_ratio < low) | (log_ratio > high)] = -np.inf
    out: F64 = penalty
    return out


def _trim_silence(beats: npt.NDArray[np.int64], onset: F64) -> npt.NDArray[np.int64]:
    """Drops beats at the start and end where the onset envelope is weak (silence, fades)."""
    if len(beats) < 3:
        return beats
    strength = onset[beats]
    smoothed = np.convolve(strength, np.hanning(5), mode="same") / np.hanning(5).sum()
    threshold = TRIM_SHARE * np.sqrt(np.mean(smoothed**2))
    strong = np.flatnonzero(smoothed >= threshold)
    if len(strong) == 0:
        return beats[:0]
    return beats[strong[0] : strong[-1] + 1]


def _refine(beats: npt.NDArray[np.int64], onset: F64) -> F64:
    """Sub-frame beat positions by parabolic interpolation on the onset peak."""
    out = beats.astype(np.float64)
    inner = (beats > 0) & (beats < len(onset) - 1)
    b = beats[inner]
    a, c, d = onset[b - 1], onset[b], onset[b + 1]
    denom = a - 2 * c + d
    shift = np.clip(0.5 * (a - d) / np.where(denom < 0, denom, -1.0), -0.5, 0.5)
    out[inner] += np.where(denom < 0, shift, 0.0)
    return out


def _regularise_weak(beats: F64, strength: F64) -> F64:
    """Evenly spaced beats where the onsets are weak (a drumless intro or break).

    On an integer frame grid, the tracker would drift there by always taking the cheaper
    rounding of the period; weak beats are re-placed from their strong neighbours instead.
    """
    n = len(beats)
    if n < 8:
        return beats
    strong = strength >= 0.3 * float(np.median(strength))
    if strong.sum() < 4 or strong.all():
        return beats
    out = beats.copy()
    idx = np.flatnonzero(strong)
    # Interior runs: equal steps between the two strong beats around them.
    for k in np.flatnonzero(np.diff(idx) > 1):
        a, b = int(idx[k]), int(idx[k + 1])
        out[a : b + 1] = np.linspace(beats[a], beats[b], b - a + 1)
    first, last = int(idx[0]), int(idx[-1])
    if first > 0:
        out[:first] = beats[first] - np.arange(first, 0, -1) * _beat_step(beats, idx[:9])
    if last < n - 1:
        out[last + 1 :] = beats[last] + np.arange(1, n - last) * _beat_step(beats, idx[-9:])
    keep = (out >= 0) & (out <= beats[-1])
    result: F64 = out[keep]
    return result


def _beat_step(beats: F64, strong: npt.NDArray[np.int64]) -> float:
    """Median time per beat between consecutive strong beats (indices `strong`, two or more),
    counting the weak beats between them: strong beats may be several beats apart."""
    per_beat = np.diff(beats[strong]) / np.diff(strong)
    return float(np.median(per_beat))


def metrical_level(beats_s: F64, onset: F32, full: F32, low: F32, fps: float) -> float:
    """Factor (0.5, 1 or 2) by which the tracked beat rate should change.

    `onset` is the envelope the tempo was read from (the ratios below were set on it);
    `full` and `low` are its all-band and bass-band parts. Halve when every other beat is
    much weaker than its neighbours (the tracker locked on eighths). Double when the points
    halfway between beats are nearly as strong as the beats themselves, or when they carry a
    backbeat: a strong onset over all bands with little bass under it. Kick on the tracked
    beats and snare halfway between them is the pattern of a fast song's beats 1-2-3-4 read
    as half notes. The off-beat is looked for from 40% to 60% of the way to the next beat:
    a swung eighth two thirds of the way (a shuffle at its own tempo) is no beat.
    """
    if len(beats_s) < 16:
        return 1.0
    frames = beats_s * fps
    on = window_max(onset, frames - 1.5, frames + 1.5)
    beat_level = float(np.median(on))
    if beat_level <= 0:
        return 1.0
    even, odd = float(np.median(on[0::2])), float(np.median(on[1::2]))
    if min(even, odd) < HALVE_RATIO * max(even, odd):
        return 0.5
    if midpoint_ratio(frames, onset) > DOUBLE_RATIO:
        return 2.0
    backbeat = midpoint_ratio(frames, full) > BACKBEAT_FULL_RATIO
    if backbeat and midpoint_ratio(frames, low) < BACKBEAT_LOW_RATIO:
        return 2.0
    return 1.0


def midpoint_ratio(frames: F64, onset: F32) -> float:
    """Median onset strength between consecutive beats over the median on the beats."""
    on = float(np.median(window_max(onset, frames - 1.5, frames + 1.5)))
    gaps = np.diff(frames)
    mid = window_max(onset, frames[:-1] + 0.4 * gaps, frames[:-1] + 0.6 * gaps)
    return float(np.median(mid)) / on if on > 0 else 0.0


def window_max(values: F32 | F64, lo: F64, hi: F64) -> F64:
    """Maximum of values[floor(lo) : ceil(hi) + 1] for each pair of bounds (0 where empty)."""
    n = len(values)
    a = np.clip(np.floor(lo).astype(np.int64), 0, n)
    b = np.clip(np.ceil(hi).astype(np.int64) + 1, 0, n)
    width = int(max(1, (b - a).max(initial=1)))
    index = a[:, None] + np.arange(width)[None, :]
    inside = index < b[:, None]
    padded = np.r_[values.astype(np.float64), 0.0]
    taken = np.where(inside, padded[np.minimum(index, n)], -np.inf)
    out: F64 = np.maximum(taken.max(axis=1, initial=-np.inf), 0.0) if len(a) else np.zeros(0)
    return np.where(b > a, out, 0.0)
