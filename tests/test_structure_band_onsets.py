"""Onsets per band group: how the bands are grouped, how the beat grid is placed on them,
and how older states' onsets are widened."""

import numpy as np
import pytest

from segue.structure.analysis import analyze_features
from segue.structure.features import StructureFeatures
from segue.structure.onset import (
    BAND_GROUPS,
    N_MELS,
    band_group_shares,
    band_group_sizes,
    spectral_flux,
)
from segue.structure.state_codec import widen_onset

FPS = 22050 / 490
BEAT_FRAMES = 22  # 122.7 BPM on whole frames
# Groups, lowest first: bass (kick), low-mid (chords), high-mid (snare), high (hats).
BASS, LOW_MID, HIGH_MID, HIGH = range(BAND_GROUPS)


def test_the_model_bands_fall_into_bass_low_mid_high_mid_and_high_groups() -> None:
    # Centres below 200 Hz, 200 Hz-1 kHz, 1-4 kHz and above 4 kHz of the 40 model bands.
    assert band_group_sizes(N_MELS) == (3, 10, 17, 10)
    assert float(band_group_shares(N_MELS).sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("n_mels", [1, 2, 4, 7, 40, 128])
def test_every_band_layout_gets_groups_that_cover_it(n_mels: int) -> None:
    sizes = band_group_sizes(n_mels)
    assert len(sizes) == BAND_GROUPS and sum(sizes) == n_mels
    assert sizes[0] >= 1
    if n_mels >= BAND_GROUPS:
        assert min(sizes) >= 1


def test_the_group_fluxes_weigh_back_into_the_flux_over_all_bands() -> None:
    rng = np.random.default_rng(0)
    mel = rng.normal(-4.0, 1.0, (50, N_MELS)).astype(np.float32)
    groups = spectral_flux(mel, None)
    rise = np.maximum(np.diff(mel, axis=0) - 0.1, 0.0)  # the dead zone, no leakage floor hit
    assert groups.shape == (50, BAND_GROUPS)
    assert np.allclose(groups[1:] @ band_group_shares(N_MELS), rise.mean(axis=1), atol=1e-5)
    assert np.allclose(groups[1:, 0], rise[:, :3].mean(axis=1), atol=1e-5)


def test_widened_onsets_keep_the_bass_and_the_mean_over_all_bands() -> None:
    old = np.asarray([[0.5, 1.0], [0.2, 0.0], [0.0, 0.0]], np.float32)  # all bands, bass
    bands = widen_onset(old, N_MELS)
    assert bands.shape == (3, BAND_GROUPS)
    assert np.array_equal(bands[:, 0], old[:, 1])
    assert np.allclose(bands @ band_group_shares(N_MELS), old[:, 0])


def _band_features(on_beat: dict[int, float], off_beat: dict[int, float]) -> StructureFeatures:
    """60 s of band onsets: pulses on a 22-frame beat in some groups, halfway between the
    beats in others (with a little noise everywhere)."""
    n = int(60 * FPS)
    rng = np.random.default_rng(1)
    bands = rng.uniform(0.0, 0.02, (n, BAND_GROUPS)).astype(np.float32)
    beats = np.arange(30, n - 30, BEAT_FRAMES)
    for group, height in on_beat.items():
        bands[beats, group] += height
    for group, height in off_beat.items():
        bands[beats + BEAT_FRAMES // 2, group] += height
    times = np.arange(n) / FPS
    chroma_times = np.arange(0.0, 60.0, 0.25)
    return StructureFeatures(
        sample_rate_hz=22050,
        duration_s=n / FPS,
        onset_times_s=times,
        onset_full=(bands @ band_group_shares(N_MELS)).astype(np.float32),
        onset_low=bands[:, 0].copy(),
        onset_bands=bands,
        chroma_times_s=chroma_times,
        chroma=np.zeros((len(chroma_times), 12), np.float32),
        level_db=np.full(len(chroma_times), -20.0, np.float32),
        timbre_times_s=chroma_times,
        timbre=np.zeros((len(chroma_times), 13), np.float32),
    )


def test_kick_snare_and_hats_on_the_beat_hold_the_grid_against_a_loud_off_beat_chord() -> None:
    # Over all bands the chord, in the ten low-mid bands, is the loudest onset: 10 x 4 / 40
    # against (3 + 17 + 10) / 40 for the beat. Counted by group, three of four are on the beat.
    features = _band_features({BASS: 1.0, HIGH_MID: 1.0, HIGH: 1.0}, {LOW_MID: 4.0})
    onset_full = features.onset_full
    beat_frames = np.arange(30, len(onset_full) - 30, BEAT_FRAMES)
    assert onset_full[beat_frames + BEAT_FRAMES // 2].mean() > onset_full[beat_frames].mean()
    beats = np.asarray(analyze_features(features).beat_times_s)
    truth = beat_frames / FPS
    inner = truth[(truth > 5.0) & (truth < truth[-1] - 5.0)]
    assert np.mean([np.min(np.abs(beats - t)) < 0.05 for t in inner]) > 0.9
