import numpy as np
import pytest

from segue.structure import analyze_audio
from segue.structure.key import estimate_key
from segue.synth import generate_song


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
