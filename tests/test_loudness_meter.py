"""The streaming loudness meter: however its audio is pushed, it measures what one pass of
scipy's public sosfilt over the whole signal measures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import sosfilt

from segue.embedding.loudness import LoudnessMeter
from segue.loudness import k_weighting_sos

RATE = 22050
SIGNAL = (np.random.default_rng(7).standard_normal(3 * RATE + 123) * 0.2).astype(np.float32)


def one_pass(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K-weighted 100 ms sub-block energies and the final filter state, by the public API."""
    weighted, zf = sosfilt(k_weighting_sos(RATE), audio.astype(np.float64),
                           zi=np.zeros((2, 2)))  # fmt: skip
    quarter = round(RATE * 0.1)
    whole = weighted.size // quarter
    energies = (weighted[: whole * quarter] ** 2).reshape(whole, quarter).sum(axis=1)
    return energies, zf


def pushed(cuts: list[int]) -> LoudnessMeter:
    meter = LoudnessMeter(RATE)
    edges = [0, *sorted(cuts), SIGNAL.size]
    for start, end in itertools.pairwise(edges):
        meter.push(SIGNAL[start:end])
    return meter


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, SIGNAL.size), max_size=8))
def test_any_split_of_the_audio_gives_the_energies_and_state_of_one_sosfilt_pass(
    cuts: list[int],
) -> None:
    energies, zf = one_pass(SIGNAL)
    meter = pushed(cuts)
    np.testing.assert_allclose(meter.energies, energies, rtol=1e-12)
    np.testing.assert_allclose(meter.zi, zf, rtol=1e-12, atol=1e-15)


def test_a_meter_restored_from_its_state_continues_as_if_never_stopped() -> None:
    whole = pushed([RATE])
    half = LoudnessMeter(RATE)
    half.push(SIGNAL[:RATE])
    state = half.state()
    resumed = LoudnessMeter.from_state(RATE, state["zi"], state["energies"],  # type: ignore[arg-type]
                                       state["partial_sum"], state["partial_count"])  # type: ignore[arg-type]  # fmt: skip
    resumed.push(SIGNAL[RATE:])
    np.testing.assert_array_equal(resumed.energies, whole.energies)
    assert resumed.integrated_lufs() == whole.integrated_lufs()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pushing_never_changes_the_callers_audio(dtype: type) -> None:
    audio: np.ndarray = SIGNAL.astype(dtype)
    kept = audio.copy()
    LoudnessMeter(RATE).push(audio)
    np.testing.assert_array_equal(audio, kept)
