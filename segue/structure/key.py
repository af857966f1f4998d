"""Global key from the song's mean chroma, by correlation with major and minor key profiles."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segue.structure.camelot import KeyMode
from segue.structure.result import KeyEstimate

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Albrecht & Shanahan (2013, "The use of large corpora to train a new type of key-finding
# algorithm"): the share of time each scale degree sounds, from the tonic upwards, in 490
# pieces of known key.
MAJOR_PROFILE = np.array(
    [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081]
)
MINOR_PROFILE = np.array(
    [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052]
)
# Bellman-Budge (Bellman 2005, from Budge's chord statistics), Essentia's "bgate".
BELLMAN_MAJOR = np.array(
    [16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57]
)
BELLMAN_MINOR = np.array(
    [18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21]
)
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

_ROLL = (np.arange(12)[None, :] - np.arange(12)[:, None]) % 12


def key_scores(profile_chroma: F64, major: F64 = MAJOR_PROFILE, minor: F64 = MINOR_PROFILE) -> F64:
    """Pearson correlation of a 12-bin chroma with each key, [24]: 0-11 major, 12-23 minor."""
    keys = _standardised_keys(major, minor)
    centred = profile_chroma - profile_chroma.mean()
    norm = float(np.linalg.norm(centred))
    if norm <= 1e-12:
        return np.zeros(24)
    out: F64 = keys @ (centred / norm)
    return out


def _standardised_keys(major: F64, minor: F64) -> F64:
    """[24, 12]: each key's profile rolled to its tonic, centred and scaled to unit norm."""
    # Row t of profile[_ROLL] is np.roll(profile, t).
    rolled = np.concatenate([major[_ROLL], minor[_ROLL]])
    centred = rolled - rolled.mean(axis=1, keepdims=True)
    out: F64 = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    return out


def song_chroma(chroma: F32, level_db: F32) -> F64:
    """Mean chroma of the song: each frame scaled to its strongest class, louder frames
    counting more.

    Classes are compared as amplitudes (square root of the energy), so a few loud notes do
    not dominate, and silent frames (below -50 dBFS) are left out.
    """
    if len(chroma) == 0:
        return np.zeros(12)
    linear = np.sqrt(np.power(10.0, chroma.astype(np.float64)))
    linear /= np.maximum(linear.max(axis=1, keepdims=True), 1e-12)
    audible = level_db > -50.0
    if not np.any(audible):
        return np.zeros(12)
    weights = np.power(10.0, level_db[audible].astype(np.float64) / 40.0)
    out: F64 = (linear[audible] * weights[:, None]).sum(axis=0) / weights.sum()
    return out


def estimate_key(chroma: F32, level_db: F32) -> KeyEstimate:
    """Best key, with a confidence that is low for flat (noise) or one-note (tone) chroma."""
    profile = song_chroma(chroma, level_db)
    if not np.any(profile > 0):
        return KeyEstimate(0, "major", 0.0)
    # Albrecht-Shanahan's profiles read the rendered-MIDI tuning split best of five published
    # sets; averaged with Bellman-Budge's, a key wavers less between a recording and its
    # transposed copies (fifth-related near-ties) for 0.012 of that score
    # (bench/key_profiles.py).
    scores = 0.5 * (key_scores(profile) + key_scores(profile, BELLMAN_MAJOR, BELLMAN_MINOR))
    best = int(np.argmax(scores))
    tonic = best % 12
    mode: KeyMode = "major" if best < 12 else "minor"
    confidence = _confidence(profile, scores, best)
    return KeyEstimate(tonic, mode, confidence)


def krumhansl_key(chroma: F32, level_db: F32) -> tuple[int, KeyMode]:
    """Plain Krumhansl-Schmuckler estimate, the baseline this module is compared against."""
    mean = np.power(10.0, chroma.astype(np.float64)).mean(axis=0) if len(chroma) else np.zeros(12)
    scores = key_scores(mean, KRUMHANSL_MAJOR, KRUMHANSL_MINOR)
    best = int(np.argmax(scores))
    return best % 12, ("major" if best < 12 else "minor")


def _confidence(profile: F64, scores: F64, best: int) -> float:
    # Tonal music has a few strong pitch classes: not one (a tone), not all (noise).
    share = profile / profile.sum()
    effective = float(np.exp(-np.sum(share * np.log(share + 1e-12))))
    spread = float(np.clip((effective - 1.5) / 2.0, 0.0, 1.0))
    contrast = float(np.clip((share.max() - np.median(share)) / np.median(share) / 0.6, 0.0, 1.0))
    # Margin over the best key that is not a close relative (relative, parallel, fifths).
    tonic, minor = best % 12, best >= 12
    related = {best}
    relative = (tonic + 9) % 12 + 12 if not minor else (tonic + 3) % 12
    related.add(relative)
    for step in (5, 7):
        related.add((tonic + step) % 12 + (12 if minor else 0))
    others = [scores[i] for i in range(24) if i not in related]
    margin = float(np.clip((scores[best] - max(others)) / 0.3, 0.0, 1.0))
    fit = float(np.clip((scores[best] - 0.3) / 0.5, 0.0, 1.0))
    return round(fit * (0.5 + 0.5 * margin) * spread * contrast, 3)
