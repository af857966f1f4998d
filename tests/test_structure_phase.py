"""A beat grid keeps one phase: slides onto the off-beat are found and undone, while steady
grids and rubato are left alone (segue.structure.phase)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.structure.phase import MIN_SLIDE, Slide, find_slides, unify_phase

FPS = 45.0
PERIOD_S = 0.5


def _envelope(beats_s: np.ndarray, duration_s: float, gain: float = 1.0) -> np.ndarray:
    """An onset envelope with a unit peak on each frame nearest to `beats_s`."""
    onset = np.zeros(int(duration_s * FPS) + 1, np.float32)
    onset[np.round(beats_s * FPS).astype(int)] += gain
    return onset


def _slid_grid() -> tuple[np.ndarray, np.ndarray]:
    """(true beats every 0.5 s for 40 s, a grid that slides half a beat late over beats 30-32
    and back over beats 50-52)."""
    truth = np.arange(80) * PERIOD_S + 0.5
    late = np.zeros(80)
    late[30:33] = [1 / 6, 2 / 6, 3 / 6]
    late[33:50] = 0.5
    late[50:53] = [2 / 6, 1 / 6, 0.0]
    return truth, np.asarray(truth + late * PERIOD_S, np.float64)


def test_a_half_beat_slide_and_its_return_are_found_with_their_sizes() -> None:
    _, grid = _slid_grid()
    deviation = np.diff(grid) / PERIOD_S - 1.0
    slides = find_slides(deviation)
    assert len(slides) == 2
    assert (slides[0].first, slides[0].last, round(slides[0].beats, 6)) == (29, 31, 0.5)
    assert (slides[1].first, slides[1].last, round(slides[1].beats, 6)) == (49, 51, -0.5)


def test_a_slid_grid_is_put_back_on_the_phase_with_the_stronger_onsets() -> None:
    truth, grid = _slid_grid()
    # Off-beats inside the slid stretch are louder, as in the pieces where the tracker slid.
    onset = _envelope(truth, 41.0) + _envelope(truth[30:50] + 0.25, 41.0, gain=1.5)
    fixed = unify_phase(grid, onset, FPS)
    assert len(fixed) == len(truth)
    assert np.max(np.abs(fixed - truth)) < 0.03


def test_a_steady_grid_and_a_gradual_tempo_change_are_left_alone() -> None:
    steady = np.asarray(np.arange(80) * PERIOD_S + 0.5, np.float64)
    assert unify_phase(steady, _envelope(steady, 41.0), FPS) is steady
    # Rubato: the period stretches by 1% a beat for 20 beats, then holds; no slide.
    periods = PERIOD_S * np.r_[np.ones(30), 1.0 + 0.01 * np.arange(20), np.ones(29) * 1.2]
    rubato = np.asarray(np.r_[0.5, 0.5 + np.cumsum(periods)], np.float64)
    assert unify_phase(rubato, _envelope(rubato, 50.0), FPS) is rubato


def test_a_slide_smaller_than_the_minimum_is_not_one() -> None:
    deviation = np.r_[np.zeros(10), [0.12, 0.12], np.zeros(10)]
    assert MIN_SLIDE > 0.24
    assert find_slides(deviation) == []
    assert find_slides(np.r_[np.zeros(10), [0.2, 0.2], np.zeros(10)]) == [Slide(10, 11, 0.4)]


def test_noisy_intervals_either_side_keep_a_slide_from_counting() -> None:
    # A fast piece's grid jitters by a frame either way; a run amid that jitter is no slide.
    jitter = np.tile([0.08, -0.08], 6)
    assert find_slides(np.r_[jitter, [0.2, 0.2], jitter]) == []


@settings(max_examples=200, deadline=None)
@given(
    intervals=st.lists(st.floats(0.2, 1.2), min_size=1, max_size=120),
    strengths=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=64),
)
def test_any_grid_comes_back_increasing_finite_and_within_the_song(
    intervals: list[float], strengths: list[float]
) -> None:
    beats = np.asarray(np.r_[0.3, 0.3 + np.cumsum(intervals)], np.float64)
    onset = np.resize(np.asarray(strengths, np.float32), int(beats[-1] * FPS) + 2)
    out = unify_phase(beats, onset, FPS)
    assert np.all(np.isfinite(out)) and np.all(out >= 0.0)
    assert np.all(np.diff(out) > 0.0)
    assert out[-1] <= beats[-1] + 1.2


@settings(max_examples=200, deadline=None)
@given(
    period=st.floats(0.25, 1.0),
    count=st.integers(16, 120),
    slides=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.integers(1, 6), st.floats(-0.9, 0.9)), max_size=4
    ),
    louder=st.floats(0.0, 3.0),
)
def test_grids_with_slides_come_back_increasing_and_about_as_long(
    period: float, count: int, slides: list[tuple[float, int, float]], louder: float
) -> None:
    steps = np.ones(count - 1)
    for where, length, total in slides:
        first = int(where * (count - 1 - length))
        steps[first : first + length] += total / length
    beats = np.asarray(0.5 + np.r_[0.0, np.cumsum(np.maximum(steps, 0.3))] * period, np.float64)
    onset = _envelope(beats, float(beats[-1]) + 1.0) + _envelope(
        beats[::3] + period / 2, float(beats[-1]) + 1.0, gain=louder
    )
    out = unify_phase(beats, onset, FPS)
    assert np.all(np.isfinite(out)) and np.all(np.diff(out) > 0.0)
    assert abs(len(out) - len(beats)) <= 2 * len(slides) + 1
