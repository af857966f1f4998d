"""The bar period the tempo's metrical level is checked against, and the peak heights the
candidate tempi are compared by (segue.structure.tempo)."""

import numpy as np
import pytest

from segue.structure.tempo import bar_period, peak_heights, tempogram

FPS = 45.0


def _pulses(period_frames: int, accent_every: int, seconds: float = 40.0) -> np.ndarray:
    """A click every `period_frames` onset frames (on whole frames, so that no period is
    blurred by rounding), every `accent_every`-th one three times as loud."""
    onset = np.zeros(int(seconds * FPS), np.float32)
    for k, frame in enumerate(range(20, len(onset) - 20, period_frames)):
        onset[frame] = 3.0 if k % accent_every == 0 else 1.0
    return onset


def test_the_bar_period_is_the_accented_pulse_not_the_beat() -> None:
    # 150 BPM (18 frames) with a loud first beat every four: the bar lasts 72 frames, 1.6 s.
    assert bar_period(tempogram(_pulses(18, 4), FPS).mean(axis=0), FPS) == 72


def test_a_bar_of_three_is_found_as_well_as_one_of_four() -> None:
    # 135 BPM (20 frames) in 3/4: the bar lasts 60 frames, no multiple of two beats.
    assert bar_period(tempogram(_pulses(20, 3), FPS).mean(axis=0), FPS) == 60


def test_a_peak_between_two_lags_is_read_at_its_full_height() -> None:
    # A cosine peak of height 1 at lag 10.5: the samples either side read 0.945 each.
    lags = np.arange(1, 20)
    values = np.cos((np.arange(21) - 10.5) / 1.5).clip(0.0, None)
    heights = peak_heights(values, lags)
    assert values[10] < 0.95
    assert heights[lags == 10][0] == pytest.approx(1.0, abs=0.01)
    # Lags off the peak keep their value.
    assert heights[lags == 5][0] == values[5]
