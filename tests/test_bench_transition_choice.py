"""bench/bench_transition_choice.py: the pure helpers (no data files, no services)."""

from __future__ import annotations

import numpy as np

from bench import bench_transition_choice as tc


def test_feasible_starts_keep_room_for_the_incoming_excerpt() -> None:
    assert tc.feasible_starts((0.0, 8.0, 16.0, 24.0, 32.0), 40.0, 24.0) == [0.0, 8.0, 16.0]


def test_logmel_stats_are_mean_then_std_per_band() -> None:
    frames = np.array([[0.0, 2.0], [2.0, 2.0]], np.float32)
    assert np.allclose(tc.logmel_stats(frames), [1.0, 2.0, 1.0, 0.0])


def test_zscore_leaves_a_constant_column_at_zero() -> None:
    z = tc.zscore(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert np.allclose(z, [[-1.0, 0.0], [1.0, 0.0]])


def test_nearest_picks_the_identical_segment_among_candidates() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.normal(size=(135, 40)).astype(np.float32) for _ in range(6)]
    stats = tc.zscore(np.vstack([tc.logmel_stats(f) for f in frames]))
    assert tc.nearest(stats[3], np.delete(stats, 0, axis=0)) == 2  # row 3, one row removed
    assert tc.nearest(stats[3], np.where(np.arange(6)[:, None] == 3, np.inf, stats)) != 3


def test_bootstrap_interval_contains_the_median_and_is_reproducible() -> None:
    values = np.random.default_rng(2).normal(size=40)
    median, low, high = tc.bootstrap_median(values, np.random.default_rng(0))
    assert low <= median <= high
    assert median == np.median(values)
    assert tc.bootstrap_median(values, np.random.default_rng(0)) == (median, low, high)


def test_verdict_passes_only_when_every_comparison_holds() -> None:
    good = {"learned": (1.0, 0.9, 1.1), "random": (2.0, 1.9, 2.1), "log-mel": (2.0, 1.9, 2.1),
            "learned-random": (-1.0, -1.2, -0.8), "learned-log-mel": (-1.0, -1.2, -0.8)}
    summary = {m: dict(good) for m in tc.METRICS}
    assert tc.verdict(summary)[0]
    summary["mel_mse"]["learned-log-mel"] = (-1.0, -1.2, 0.1)  # interval reaches zero
    passed, lines = tc.verdict(summary)
    assert not passed
    assert sum("does not hold" in line for line in lines) == 1
