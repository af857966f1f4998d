"""Beat grids for DJ software follow the analysed beats, or are left out with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from test_export_fixtures import STEADY_SONGS, analysis_of, held_tone_analysis

from segue.export.grid import GRID_TOLERANCE_S, MIN_TEMPO_CONFIDENCE, Grid, fit_grid
from segue.v1 import common_pb2


def _beats(analysis: common_pb2.SongAnalysis) -> np.ndarray:
    return np.array([b.time_s for b in analysis.beats])


def _errors_s(grid: Grid, beats: np.ndarray) -> np.ndarray:
    """Distance of each analysed beat a grid piece covers from that piece's beat."""
    return np.concatenate(
        [
            np.abs(s.beat_times_s() - beats[s.first_beat : s.first_beat + s.beats])
            for s in grid.segments
        ]
    )


@pytest.mark.parametrize("name", STEADY_SONGS)
def test_a_steady_real_song_gets_one_grid_piece_that_lies_on_its_beats(name: str) -> None:
    analysis = analysis_of(name)
    result = fit_grid(analysis)
    assert result.grid is not None, result.reason
    grid = result.grid
    assert len(grid.segments) == 1
    assert np.quantile(_errors_s(grid, _beats(analysis)), 0.95) <= GRID_TOLERANCE_S
    assert grid.mean_bpm == pytest.approx(analysis.tempo.bpm, rel=0.01)
    assert grid.segments[0].start_s >= 0.0
    first = grid.segments[0]
    assert first.beat_in_bar == analysis.beats[first.first_beat].position_in_bar


def test_the_first_downbeat_is_a_beat_1_of_the_grid() -> None:
    analysis = analysis_of(STEADY_SONGS[1])
    grid = fit_grid(analysis).grid
    assert grid is not None
    # The first analysed beat 1 the grid covers (it starts a beat late where its line would
    # put the first beat a few ms before the song's start).
    start = grid.segments[0].start_s - GRID_TOLERANCE_S
    downbeats = [b.time_s for b in analysis.beats if b.position_in_bar == 1 and b.time_s >= start]
    assert grid.first_downbeat_s == pytest.approx(downbeats[0], abs=GRID_TOLERANCE_S)
    assert grid.first_downbeat_s - grid.segments[0].start_s < 4 * grid.segments[0].period_s


def test_a_tempo_that_steps_up_halfway_gets_a_second_piece_at_the_bar_where_it_changes() -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    beats = _beats(analysis)
    change = next(
        i for i in range(len(beats) // 2, len(beats)) if analysis.beats[i].position_in_bar == 1
    )
    # The same beats played 10% faster from that bar on.
    faster = np.r_[beats[:change], beats[change] + (beats[change:] - beats[change]) / 1.1]
    for beat, t in zip(analysis.beats, faster, strict=True):
        beat.time_s = float(t)
    grid = fit_grid(analysis).grid
    assert grid is not None
    assert [s.first_beat for s in grid.segments] == [0, change]
    assert grid.segments[1].bpm / grid.segments[0].bpm == pytest.approx(1.1, rel=0.005)
    assert np.quantile(_errors_s(grid, faster), 0.95) <= GRID_TOLERANCE_S


def test_beats_that_wander_give_no_grid_and_say_why() -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    rng = np.random.default_rng(0)
    for beat in analysis.beats:
        beat.time_s += float(rng.uniform(-0.08, 0.08))
    result = fit_grid(analysis)
    assert result.grid is None
    assert result.reason.startswith("no beat grid: the beat is not steady")


def test_a_held_tone_has_no_beats_so_no_grid() -> None:
    result = fit_grid(held_tone_analysis())
    assert result.grid is None
    assert result.reason == "no beat grid: the analysis found no beats"


def test_an_unclear_pulse_gives_no_grid_even_with_beats() -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    analysis.tempo.confidence = MIN_TEMPO_CONFIDENCE / 2
    result = fit_grid(analysis)
    assert result.grid is None
    assert "tempo confidence 0.25 is below 0.5" in result.reason


def test_an_unknown_meter_assumes_bar_1_at_the_first_beat_and_says_so() -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    for beat in analysis.beats:
        beat.position_in_bar = 0
    result = fit_grid(analysis)
    assert result.grid is not None
    assert result.grid.segments[0].beat_in_bar == 1 and result.grid.segments[0].beats_per_bar == 4
    assert result.notes == ("meter unknown: 4/4 with bar 1 at the first beat assumed",)
