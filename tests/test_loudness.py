"""BS.1770 loudness: the same numbers as pyloudnorm, for every length of audio."""

import math

import numpy as np
import pyloudnorm
import pytest

from segue.loudness import integrated_lufs, short_term_lufs

RATE = 44100


def _noise(frames: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, frames)) * 0.1).astype(np.float32)


def _pyloudnorm_one_block(audio: np.ndarray) -> float:
    meter = pyloudnorm.Meter(RATE, block_size=audio.shape[1] / RATE)
    meter.integrated_loudness(np.ascontiguousarray(audio.T, dtype=np.float64))
    return float(meter.blockwise_loudness[0])


@pytest.mark.parametrize("frames", [100, 4410, 30000, 132300])
def test_short_term_loudness_is_pyloudnorms_one_block_loudness(frames: int) -> None:
    audio = _noise(frames)
    assert short_term_lufs(audio, RATE) == pytest.approx(_pyloudnorm_one_block(audio), abs=1e-6)


def test_short_term_loudness_is_defined_for_lengths_pyloudnorms_meter_refuses() -> None:
    # frames / rate * rate rounds to just above frames for these lengths, and pyloudnorm's
    # Meter then calls the audio shorter than its own block: a mixer render once failed so.
    refused = [f for f in range(64, 200_000, 7) if f / RATE * RATE > f][:20]
    assert refused
    with pytest.raises(ValueError):
        _pyloudnorm_one_block(_noise(refused[0]))
    for frames in refused:
        assert math.isfinite(short_term_lufs(_noise(frames), RATE))


def test_silence_has_no_loudness() -> None:
    silence = np.zeros((2, RATE), np.float32)
    assert short_term_lufs(silence, RATE) == -math.inf
    assert integrated_lufs(silence, RATE) == -math.inf


def test_integrated_loudness_matches_pyloudnorm() -> None:
    audio = _noise(5 * RATE) * np.linspace(0.2, 1.0, 5 * RATE, dtype=np.float32)
    expected = pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))
    assert integrated_lufs(audio, RATE) == pytest.approx(expected, abs=1e-3)


def test_integrated_loudness_of_audio_longer_than_a_chunk_matches_pyloudnorm() -> None:
    # Long audio is filtered CHUNK_FRAMES at a time (bounded memory for whole mixes); the
    # filter state carried across chunks must make that invisible.
    from segue.loudness import CHUNK_FRAMES

    frames = 2 * CHUNK_FRAMES + 12345
    audio = _noise(frames, seed=3) * np.linspace(0.05, 1.0, frames, dtype=np.float32)
    expected = pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))
    assert integrated_lufs(audio, RATE) == pytest.approx(expected, abs=1e-6)
