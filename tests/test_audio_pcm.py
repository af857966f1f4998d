"""Raw PCM to mono: the embedder's input path for every client format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.audio import pcm_to_mono
from segue.v1 import common_pb2

S16, F32 = common_pb2.SAMPLE_FORMAT_S16LE, common_pb2.SAMPLE_FORMAT_F32LE


def fmt(channels: int, sample_format: int) -> common_pb2.AudioFormat:
    return common_pb2.AudioFormat(sample_rate_hz=44100, channels=channels,
                                  sample_format=sample_format)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 8), frames=st.integers(0, 300), seed=st.integers(0, 2**31),
       sample_format=st.sampled_from([S16, F32]))
def test_mono_is_the_mean_of_the_channels_of_each_frame(channels: int, frames: int, seed: int,
                                                        sample_format: int) -> None:
    rng = np.random.default_rng(seed)
    if sample_format == S16:
        ints = rng.integers(-32768, 32768, (frames, channels)).astype("<i2")
        pcm, expected = ints.tobytes(), ints.astype(np.float64) / 32768.0
    else:
        floats = (rng.standard_normal((frames, channels)) * 0.5).astype("<f4")
        pcm, expected = floats.tobytes(), floats.astype(np.float64)
    mono = pcm_to_mono(pcm, fmt(channels, sample_format))
    assert mono.dtype == np.float32 and mono.shape == (frames,)
    np.testing.assert_allclose(mono, expected.mean(axis=1), rtol=0, atol=2e-7)


def test_stereo_is_the_exact_float32_mean() -> None:
    left, right = np.float32(0.1), np.float32(0.7)
    pcm = np.array([[left, right]], dtype="<f4").tobytes()
    assert pcm_to_mono(pcm, fmt(2, F32))[0] == (left + right) / np.float32(2)


@pytest.mark.parametrize("sample_format", [S16, F32])
def test_a_partial_frame_is_refused_saying_so(sample_format: int) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        pcm_to_mono(b"\x00" * 5, fmt(2, sample_format))
