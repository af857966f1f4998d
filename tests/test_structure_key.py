import numpy as np
import pytest

from devkit.synth import generate_song
from segue.structure import analyze_audio
from segue.structure.key import estimate_key


@pytest.mark.parametrize(
    ("seed", "key"), [(31, "E major"), (32, "F# minor"), (33, "Bb major"), (34, "C minor")]
)
def test_key_of_generated_song_is_found(seed: int, key: str) -> None:
    song = generate_song(seed, duration_s=40, key=key)
    result = analyze_audio(song.audio, song.sample_rate_hz)
    assert result.key.name == key
    assert result.key.camelot == song.camelot
    assert result.key.confidence > 0.4


def test_key_of_empty_chroma_is_a_zero_confidence_guess() -> None:
    estimate = estimate_key(np.zeros((0, 12), np.float32), np.zeros(0, np.float32))
    assert estimate.confidence == 0.0


def test_key_scores_are_correlations_with_each_rotated_profile() -> None:
    from segue.structure.key import MAJOR_PROFILE, MINOR_PROFILE, key_scores

    chroma = np.random.default_rng(3).random(12)
    expected = [
        np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
        for profile in (MAJOR_PROFILE, MINOR_PROFILE)
        for tonic in range(12)
    ]
    assert np.allclose(key_scores(chroma), expected)
