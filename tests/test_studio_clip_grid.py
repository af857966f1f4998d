"""Clip starts on one grid for every session (segue.studio.clip_grid), so that clips are shared
across annotators and a library's clips can be cut ahead."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from segue.studio.choose import LibrarySong, PlannedRepeat, TripletChooser
from segue.studio.clip_grid import ClipGrid, window_ms

GRID = ClipGrid(clip_ms=12_000, step_ms=2_000)


def test_starts_are_multiples_of_the_step_inside_the_middle_80_percent() -> None:
    starts = GRID.starts_ms(200_000)
    assert starts == list(range(20_000, 168_001, 2_000))  # 20 s .. 180 s - 12 s
    assert window_ms(200_000, 12_000) == (20_000, 180_000)


def test_a_song_with_no_grid_point_that_fits_has_one_start_near_its_middle() -> None:
    assert GRID.starts_ms(13_000) == [500]  # window 0.5-12.5 s: no multiple of 2 s fits


def test_the_grid_rounds_the_clip_up_to_whole_milliseconds() -> None:
    assert ClipGrid.of(0.6, 2.0) == ClipGrid(600, 2000)
    assert ClipGrid.of(12.0004, 0.0001) == ClipGrid(12_001, 1)


def test_a_grid_needs_positive_lengths() -> None:
    with pytest.raises(ValueError, match="at least 1 ms"):
        ClipGrid(0, 1000)


def test_gold_pairs_never_overlap_and_cover_every_grid_pair_evenly() -> None:
    rng = np.random.default_rng(0)
    grid = ClipGrid(clip_ms=4_000, step_ms=2_000)
    starts = grid.starts_ms(40_000, clips=2)  # 4 s .. 32 s
    pairs = Counter(grid.random_pair_ms(40_000, rng) for _ in range(20_000))
    expected = {(a, b) for a in starts for b in starts if b - a >= 4_000}
    assert set(pairs) == expected
    assert chisquare(list(pairs.values())).pvalue > 1e-3  # uniform over the pairs


def test_a_song_just_two_clips_long_gives_its_two_halves_for_a_gold_page() -> None:
    assert GRID.random_pair_ms(25_000, np.random.default_rng(0)) == (500, 12_500)


def test_every_start_lists_each_start_a_draw_can_give() -> None:
    rng = np.random.default_rng(1)
    for duration in (13_000, 25_000, 31_000, 200_000):
        drawn = {GRID.random_start_ms(duration, rng) for _ in range(500)}
        if duration >= 24_000:
            drawn |= {s for _ in range(500) for s in GRID.random_pair_ms(duration, rng)}
        assert drawn == set(GRID.every_start_ms(duration)), duration


def test_a_song_keeps_at_most_per_song_starts_spread_over_its_window() -> None:
    grid = ClipGrid(clip_ms=12_000, step_ms=2_000, per_song=8)
    full = GRID.starts_ms(200_000)  # 75 starts, 20 s to 168 s
    assert grid.starts_ms(200_000) == [20_000, 42_000, 62_000, 84_000, 104_000, 126_000,
                                       146_000, 168_000]
    assert set(grid.starts_ms(200_000)) <= set(full)
    assert grid.every_start_ms(200_000) == grid.starts_ms(200_000)  # gold pairs among them
    assert ClipGrid(12_000, 2_000, per_song=1).starts_ms(200_000) == [full[len(full) // 2]]


def test_gold_pairs_among_spread_starts_never_overlap() -> None:
    grid = ClipGrid(clip_ms=12_000, step_ms=2_000, per_song=3)
    rng = np.random.default_rng(2)
    starts = grid.starts_ms(40_000, clips=2)  # 4, 14, 24 s: only 4 & 24 s do not overlap
    assert starts == [4_000, 14_000, 24_000]
    assert {grid.random_pair_ms(40_000, rng) for _ in range(50)} == {(4_000, 24_000)}


def test_a_library_is_listed_one_start_of_every_song_at_a_time() -> None:
    songs = [("a", 31.0), ("b", 200.0), ("short", 11.0)]
    clips = list(GRID.library_clips(songs))
    assert [song for song, _ in clips[:2]] == ["a", "b"]  # a partial pass reaches every song
    assert "short" not in {song for song, _ in clips}  # shorter than a clip: never played
    assert sorted(s for song, s in clips if song == "b") == GRID.every_start_ms(200_000)
    assert len(clips) == len(GRID.every_start_ms(31_000)) + len(GRID.every_start_ms(200_000))


def test_every_session_draws_its_clips_from_the_librarys_grid() -> None:
    rng = np.random.default_rng(3)
    songs = [LibrarySong(f"s{i}", float(d), rng.standard_normal(8).astype(np.float32))
             for i, d in enumerate(rng.uniform(13.0, 300.0, size=30))]
    grid = ClipGrid.of(12.0, 2.0, per_song=8)
    library = {(song, start / 1000.0)
               for song, start in grid.library_clips([(s.song_id, s.duration_s) for s in songs])}
    heard: set[tuple[str, float]] = set()
    for seed in range(40):
        chooser = TripletChooser(songs, clip_s=12.0, active_fraction=0.5, gold_every=5,
                                 repeats=2, rng=np.random.default_rng(seed), grid=grid)
        for page in chooser.session_plan(15):
            triplet = page.triplet if isinstance(page, PlannedRepeat) else page
            heard |= {(c.song_id, c.start_s) for c in triplet.clips}
    assert heard <= library
    assert len(heard) > 0.5 * len(library)  # sessions spread over the grid, not a few clips


def test_a_grid_for_another_clip_length_is_refused() -> None:
    songs = [LibrarySong(f"s{i}", 100.0) for i in range(4)]
    with pytest.raises(ValueError, match="12000 ms clips, not 10 s"):
        TripletChooser(songs, clip_s=10.0, active_fraction=0.0, gold_every=5, repeats=0,
                       rng=np.random.default_rng(0), grid=ClipGrid.of(12.0, 2.0))
