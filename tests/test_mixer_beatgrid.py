"""Beat grids for mixing: from the structure analysis, steady where the music is, and read at
the metrical level that matches the other song."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from mixer_fixtures import RATE, analysis_of, song

from segue.mixing.beatgrid import BeatGrid, fit_grid
from segue.mixing.excerpt import Excerpt
from segue.mixing.plan import Plan
from segue.mixing.planner import plan_transition
from segue.mixing.render import render_transition
from segue.mixing.style import Params, Style
from segue.v1 import mixer_pb2

F64 = npt.NDArray[np.float64]


def nearest_ms(times: F64, reference: F64) -> F64:
    idx = np.clip(np.searchsorted(reference, times), 1, reference.size - 1)
    out: F64 = 1000 * np.minimum(np.abs(times - reference[idx - 1]), np.abs(times - reference[idx]))
    return out


def stereo_excerpt(name: str, mono: npt.NDArray[np.float32], **kwargs: object) -> Excerpt:
    info = mixer_pb2.ExcerptInfo(encoded=True)
    analysis = kwargs.pop("analysis", None)
    if analysis is not None:
        info.analysis.CopyFrom(analysis)  # type: ignore[arg-type]
    return Excerpt(name, np.stack([mono, mono]), RATE, info, **kwargs)  # type: ignore[arg-type]


def true_beat_errors_ms(plan: Plan, a_beats: F64, b_beats: F64) -> F64:
    """Distance from each of B's true overlap beats, where the plan plays it, to A's true beats."""
    ov0, ov1 = plan.overlap.start_s, plan.overlap.end_s
    b_out = plan.time_map.to_output(b_beats / plan.playback.pitch)
    b_out = b_out[(b_out > ov0 + 0.05) & (b_out < ov1 - 0.05)]
    return nearest_ms(b_out, a_beats - plan.overlap.a_origin_s)


def test_a_steady_line_through_jittery_tracked_beats_lands_within_2_ms_of_the_true_beats() -> None:
    rng = np.random.default_rng(1)
    truth = 0.31 + 0.5 * np.arange(60, dtype=np.float64)
    tracked = truth + rng.normal(0.0, 0.008, truth.size)  # onset-frame jitter
    tracked[20:23] += 0.25  # the tracker took three off-beats
    grid = fit_grid(tracked, (np.arange(60) % 4 + 1).astype(np.int64), 1.0, "analysis")
    inside = grid.times_s[(grid.times_s > 0.3) & (grid.times_s < truth[-1])]
    assert grid.bpm == pytest.approx(120.0, rel=1e-3)
    assert nearest_ms(inside, truth).max() < 2.0
    assert grid.positions[np.argmin(np.abs(grid.times_s - truth[0]))] == 1


def test_a_tempo_that_slows_down_is_followed_not_straightened() -> None:
    periods = np.concatenate([np.full(40, 0.5), np.linspace(0.5, 0.6, 30)])  # a ritardando
    truth = np.concatenate([[0.2], 0.2 + np.cumsum(periods)])
    rng = np.random.default_rng(2)
    tracked = truth + rng.normal(0.0, 0.006, truth.size)
    grid = fit_grid(tracked, np.zeros(truth.size, np.int64), 1.0, "analysis")
    assert nearest_ms(grid.times_s, truth).max() < 10.0


def test_without_analyses_generated_songs_are_beat_matched_on_their_true_beats() -> None:
    # The grids come from the structure analysis of each excerpt; the true beats judge them.
    a, b = song(11, 126.0), song(12, 119.0)
    plan = plan_transition(
        stereo_excerpt("outgoing", a.audio),
        stereo_excerpt("incoming", b.audio),
        Style("bars", bars=4),
        Params(),
    )
    assert plan.playback.grid_a.source == plan.playback.grid_b_own.source == "estimated"
    assert plan.playback.tempo_ratio == pytest.approx(126.0 / 119.0, rel=2e-3)
    errors = true_beat_errors_ms(plan, np.asarray(a.beat_times_s), np.asarray(b.beat_times_s))
    assert errors.size >= 12
    assert np.median(errors) <= 10.0 and errors.max() <= 20.0


def test_an_incoming_grid_read_at_4_3_of_its_true_beat_is_matched_at_3_4() -> None:
    # The mixer's own reading of B took a dotted-eighth pulse for the beat (160 BPM for a
    # 120 BPM song), starting off a true beat: 126 BPM against 160 is beyond the stretch
    # limit, but B read at 3:4 is 120 BPM, with its beats on B's real beats.
    a, b = song(11, 126.0), song(31, 120.0)
    b_truth = np.asarray(b.beat_times_s)
    misread = np.arange(b_truth[0] + 0.375, b.audio.size / RATE - 0.1, 0.375)
    grid = BeatGrid(
        misread, (np.arange(misread.size) % 4 + 1).astype(np.int64), 160.0, 1.0, "estimated"
    )
    outgoing = stereo_excerpt("outgoing", a.audio, analysis=analysis_of(a))
    incoming = stereo_excerpt("incoming", b.audio, grid=grid)
    plan = plan_transition(outgoing, incoming, Style("bars", bars=4), Params())
    assert plan.playback.tempo_ratio == pytest.approx(126.0 / 120.0, rel=2e-3)
    assert "incoming read at 3:4" in plan.reason.text()
    reading = plan.reason.tempo_reading
    assert reading is not None and (reading.song, reading.level) == ("incoming", "3:4")
    assert (reading.bpm_tracked, reading.bpm_read) == pytest.approx((160.0, 120.0), rel=2e-3)
    errors = true_beat_errors_ms(plan, np.asarray(a.beat_times_s), b_truth)
    assert errors.size >= 12 and np.median(errors) <= 10.0
    rendered = render_transition(outgoing, incoming, Style("bars", bars=4), Params())
    assert rendered.report.beat_alignment_error_ms <= 10.0
