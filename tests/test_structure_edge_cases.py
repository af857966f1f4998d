"""Audio without structure gets a valid analysis that admits low confidence."""

import numpy as np
import pytest

from segue.structure import StructureResult, analyze_audio

SR = 22050


def _assert_valid(result: StructureResult, duration_s: float) -> None:
    assert result.duration_s == pytest.approx(duration_s, abs=1e-6)
    assert len(result.beat_times_s) == len(result.beat_positions)
    assert all(0 <= t <= duration_s for t in result.beat_times_s)
    assert 0.0 <= result.key.confidence <= 1.0
    assert 0.0 <= result.tempo_confidence <= 1.0
    assert result.sections, "a whole-song section is always reported"
    assert result.sections[0].start_s == 0.0
    assert result.sections[-1].end_s == pytest.approx(duration_s)
    for cue in result.cue_points:
        assert 0.0 <= cue.energy <= 1.0 and cue.phrase_bars in (0, 8, 16, 32)


def test_silence_has_no_beats_and_no_key() -> None:
    result = analyze_audio(np.zeros(20 * SR, np.float32), SR)
    _assert_valid(result, 20.0)
    assert result.beat_times_s == () and result.tempo_bpm == 0.0
    assert result.tempo_confidence == 0.0 and result.key.confidence == 0.0


def test_pure_tone_has_no_tempo_and_an_unsure_key() -> None:
    t = np.arange(20 * SR) / SR
    result = analyze_audio((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    _assert_valid(result, 20.0)
    assert result.tempo_confidence < 0.2
    assert result.key.confidence < 0.2


def test_white_noise_is_low_confidence_throughout() -> None:
    noise = np.random.default_rng(0).standard_normal(20 * SR).astype(np.float32) * 0.2
    result = analyze_audio(noise, SR)
    _assert_valid(result, 20.0)
    assert result.tempo_confidence < 0.3
    assert result.key.confidence < 0.2


def test_two_second_clip_is_analysed_with_low_tempo_confidence() -> None:
    from devkit.synth import generate_song

    clip = generate_song(51, duration_s=20, tempo_bpm=120).audio[SR : 3 * SR]
    result = analyze_audio(clip, SR)
    _assert_valid(result, 2.0)
    assert result.tempo_confidence < 0.5


def test_a_single_sample_is_analysed() -> None:
    result = analyze_audio(np.zeros(1, np.float32), SR)
    _assert_valid(result, 1 / SR)
