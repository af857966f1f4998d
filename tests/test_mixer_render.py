"""The transition renderer, in process: beat matching, loudness, peaks, length choices."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyloudnorm
import pytest
from mixer_fixtures import RATE, analysis_of, click_analysis, click_track, song
from scipy.signal import butter, sosfiltfilt

from segue.mixing.auto_length import LengthChoice
from segue.mixing.errors import MixInputError, TempoMismatch, TempoMismatchError
from segue.mixing.excerpt import Excerpt
from segue.mixing.length_reason import (
    BassSwapPlace,
    Halving,
    LengthReason,
    LengthRequest,
    TempoReading,
    UnmatchedFade,
)
from segue.mixing.limiter import true_peak_dbtp
from segue.mixing.render import render_transition
from segue.mixing.style import Params, Style
from segue.v1 import common_pb2, mixer_pb2


def excerpt(
    name: str, mono: np.ndarray, analysis: common_pb2.SongAnalysis | None = None, cue_s: float = 0.0
) -> Excerpt:
    info = mixer_pb2.ExcerptInfo(encoded=True, cue_s=cue_s)
    if analysis is not None:
        info.analysis.CopyFrom(analysis)
    return Excerpt(name, np.stack([mono, mono]).astype(np.float32), RATE, info)


def onsets(signal: np.ndarray, threshold: float) -> np.ndarray:
    """Times where the envelope first rises above threshold, at least 100 ms apart."""
    above = np.flatnonzero(np.abs(signal) > threshold)
    if above.size == 0:
        return np.array([])
    starts: np.ndarray = above[np.concatenate([[True], np.diff(above) > int(0.1 * RATE)])]
    return starts / RATE


def test_generated_songs_keep_both_beat_grids_within_10_ms_through_the_overlap() -> None:
    a, b = song(11, 126.0), song(12, 119.0)
    rendered = render_transition(
        excerpt("outgoing", a.audio, analysis_of(a)),
        excerpt("incoming", b.audio, analysis_of(b)),
        Style("bars", bars=4),
        Params(),
    )
    measured = rendered.beats_incoming_measured_s
    assert np.isfinite(measured).sum() >= 10, "most beats of B must be measurable"
    assert rendered.report.beat_alignment_error_ms <= 10.0
    assert rendered.report.tempo_ratio == pytest.approx(126.0 / 119.0, rel=1e-3)


def test_click_tracks_land_on_each_other_in_the_rendered_audio() -> None:
    # A clicks at 1 kHz, B at 5 kHz and 7% slower: after the mix both click sets coincide.
    a_audio, a_beats = click_track(128.0, 24.0, 1000.0)
    b_audio, b_beats = click_track(120.0, 24.0, 5000.0, first_beat_s=0.37)
    rendered = render_transition(
        excerpt("outgoing", a_audio, click_analysis(a_beats, 128.0)),
        excerpt("incoming", b_audio, click_analysis(b_beats, 120.0)),
        Style("bars", bars=8, curve=mixer_pb2.FADE_CURVE_LINEAR),
        Params(context_s=1.0),
    )
    mono = rendered.audio.mean(axis=0)
    low = sosfiltfilt(butter(4, [700, 1400], "bandpass", fs=RATE, output="sos"), mono)
    high = sosfiltfilt(butter(4, [4000, 6500], "bandpass", fs=RATE, output="sos"), mono)
    span = rendered.overlap_end_s - rendered.overlap_start_s
    lo, hi = rendered.overlap_start_s + 0.3 * span, rendered.overlap_end_s - 0.3 * span
    a_on = onsets(low, 0.25 * np.abs(low).max())
    b_on = onsets(high, 0.25 * np.abs(high).max())
    b_on = b_on[(b_on > lo) & (b_on < hi)]
    assert b_on.size >= 3
    errors = [np.min(np.abs(a_on - t)) for t in b_on]
    assert np.median(errors) * 1000 <= 10.0
    assert max(errors) * 1000 <= 10.0


def test_output_loudness_matches_the_target_within_1_lu() -> None:
    a, b = song(11, 126.0), song(12, 119.0)
    rendered = render_transition(
        excerpt("outgoing", 0.1 * a.audio, analysis_of(a)),  # much quieter than B
        excerpt("incoming", b.audio, analysis_of(b)),
        Style("bars", bars=4),
        Params(target_lufs=-16.0),
    )
    measured = pyloudnorm.Meter(RATE).integrated_loudness(rendered.audio.T.astype(np.float64))
    assert measured == pytest.approx(-16.0, abs=1.0)
    assert rendered.report.loudness_step_lu <= 1.0


def test_no_sample_reaches_full_scale_even_for_a_loud_target() -> None:
    a, b = song(13, 124.0), song(14, 124.0)
    loud_a = a.audio / np.abs(a.audio).max()
    loud_b = b.audio / np.abs(b.audio).max()
    rendered = render_transition(
        excerpt("outgoing", loud_a, analysis_of(a)),
        excerpt("incoming", loud_b, analysis_of(b)),
        Style("bars", bars=4, eq_bass_swap=True),
        Params(target_lufs=-6.0),
    )
    assert np.abs(rendered.audio).max() < 10 ** (-1.0 / 20)
    assert true_peak_dbtp(rendered.audio) <= -1.0 + 1e-6
    assert rendered.report.true_peak_dbtp <= -1.0 + 1e-6


def test_an_outgoing_excerpt_shorter_than_the_overlap_is_refused_by_name() -> None:
    a, b = song(11, 126.0), song(12, 119.0)
    with pytest.raises(MixInputError, match=r"outgoing excerpt .* shorter than the requested"):
        render_transition(
            excerpt("outgoing", a.audio[: 5 * RATE], analysis_of(a)),
            excerpt("incoming", b.audio, analysis_of(b)),
            Style("bars", bars=8),
            Params(),
        )


def test_tempo_beyond_the_stretch_limit_is_refused_but_double_time_is_matched() -> None:
    a = song(11, 126.0)
    slow, slow_beats = click_track(100.0, 20.0, 3000.0)
    with pytest.raises(MixInputError, match="beyond the stretch limit"):
        render_transition(
            excerpt("outgoing", a.audio, analysis_of(a)),
            excerpt("incoming", slow, click_analysis(slow_beats, 100.0)),
            Style("bars", bars=2),
            Params(),
        )
    half, half_beats = click_track(64.0, 24.0, 3000.0)
    rendered = render_transition(
        excerpt("outgoing", a.audio, analysis_of(a)),
        excerpt("incoming", half, click_analysis(half_beats, 64.0)),
        Style("bars", bars=2),
        Params(context_s=1.0),
    )
    assert rendered.report.tempo_ratio == pytest.approx(126.0 / 128.0, rel=1e-3)


def test_auto_length_blends_club_tracks_longer_than_free_time_music_and_says_why() -> None:
    a, b = song(11, 126.0, 40.0), song(12, 124.0, 40.0)
    club = render_transition(
        excerpt("outgoing", a.audio, analysis_of(a)),
        excerpt("incoming", b.audio, analysis_of(b)),
        Style("auto"),
        Params(),
    )
    rng = np.random.default_rng(3)
    drone_a = (
        0.1 * np.sin(2 * np.pi * 220 * np.arange(30 * RATE) / RATE)
        + 0.01 * rng.standard_normal(30 * RATE)
    ).astype(np.float32)
    drone_b = (
        0.1 * np.sin(2 * np.pi * 330 * np.arange(30 * RATE) / RATE)
        + 0.01 * rng.standard_normal(30 * RATE)
    ).astype(np.float32)
    ballad = render_transition(
        excerpt("outgoing", drone_a), excerpt("incoming", drone_b), Style("auto"), Params()
    )
    assert "phrase" in club.report.length_reason
    assert "weak beat" in ballad.report.length_reason
    assert club.report.overlap_bars > ballad.report.overlap_bars
    assert ballad.report.overlap_s == pytest.approx(8.0, abs=3.0)


def test_a_pair_beyond_the_stretch_limit_raises_a_tempo_mismatch_with_its_tempos() -> None:
    a = song(11, 126.0)
    slow, slow_beats = click_track(100.0, 20.0, 3000.0)
    with pytest.raises(TempoMismatchError) as raised:
        render_transition(
            excerpt("outgoing", a.audio, analysis_of(a)),
            excerpt("incoming", slow, click_analysis(slow_beats, 100.0)),
            Style("bars", bars=2),
            Params(max_stretch=0.1),
        )
    mismatch = raised.value.mismatch
    assert (mismatch.bpm_outgoing, mismatch.bpm_incoming) == pytest.approx((126.0, 100.0), rel=1e-3)
    assert mismatch.max_stretch == 0.1
    # Still an input error (INVALID_ARGUMENT), with the message the client has always had.
    assert isinstance(raised.value, MixInputError)
    assert str(raised.value) == (
        "tempo ratio 1.260 between the outgoing (126.0 BPM) and incoming (100.0 BPM) excerpts "
        "is beyond the stretch limit of +-10% (half and double time, and 3:2 and 4:3 readings "
        "where the onsets allow them, were tried too)"
    )


def reason(**changes: Any) -> LengthReason:
    """A length reason for 32 beats of 0.5 s in 4/4, with `changes` to its fields."""
    return replace(LengthReason(LengthRequest("bars", bars=8), 32, 4, 0.5), **changes)


def test_the_length_reason_reads_as_requested_bars_seconds_or_a_mashup() -> None:
    assert reason().text() == "8 bars, as requested"
    mashup = reason(asked=LengthRequest("bars", bars=8, mashup=True))
    assert mashup.text() == "8 bars, as requested (mashup)"
    seconds = reason(asked=LengthRequest("seconds", seconds=12.0), beats=23)
    assert seconds.text() == "12.0 s requested: 23 beats of the outgoing grid (11.5 s)"
    assert seconds.to_json()["chosen"] == {"beats": 23, "bars": 6, "seconds": 11.5}


def test_the_auto_length_reason_names_its_rule_numbers_halvings_and_cut() -> None:
    choice = LengthChoice(2, "strong pair", 0.83, 0.9, 16, 1, True, 3.5)
    auto = reason(asked=LengthRequest("auto"), beats=8, auto=choice)
    assert auto.text() == (
        "strong, compatible pair (score 0.83, beat clarity 0.90): blend over one whole "
        "16-bar phrase; halved to stay under 48 s; shortened to 2 bar(s), all the excerpts "
        "hold -> 2 bars (7.0 s)"
    )
    assert auto.to_json()["auto"] == {
        "rule": "strong pair",
        "score": 0.83,
        "beat_clarity": 0.9,
        "phrase_bars": 16,
        "halvings": 1,
        "shortened_to_fit_excerpts": True,
    }


def test_the_length_reason_adds_the_tempo_reading_and_the_bass_swap() -> None:
    reread = TempoReading("incoming", "3:4", True, 160.0, 120.0, 2.5)
    place = BassSwapPlace(2.0, 4, 8)
    full = reason(tempo_reading=reread, bass_swap=place)
    assert full.text() == (
        "8 bars, as requested; incoming read at 3:4 of its tracked beat (160.0 -> 120.0 BPM; "
        "onsets on the new beats 2.50x as strong); bass swapped over 2 bars on the downbeat 4 "
        "bars into the 8-bar overlap, where the mix changes sound least"
    )
    assert reason(tempo_reading=TempoReading("incoming", "double time")).text() == (
        "8 bars, as requested; incoming at double time"
    )
    assert full.to_json()["bass_swap"] == {"ramp_bars": 2.0, "downbeat_bar": 4, "overlap_bars": 8}


def test_a_halved_or_unmatched_transition_says_so_before_the_planners_own_reason() -> None:
    halved = reason(
        asked=LengthRequest("bars", bars=2),
        beats=8,
        tempo_reading=TempoReading("incoming", "half time"),
        halved=Halving(LengthRequest("seconds", seconds=9.0), 2, 2),
    )
    assert halved.text() == (
        "2 bars with a 2-bar tempo ramp: the longest halving of the request (9.0 s) that fits "
        "the part of each song its other transition leaves"
    )
    assert halved.to_json()["halved"]["request"] == {
        "length": "seconds",
        "mashup": False,
        "seconds": 9.0,
    }
    mismatch = TempoMismatch(120.0, 92.0, 0.12)
    faded = reason(
        asked=LengthRequest("seconds", seconds=8.0),
        beats=16,
        unmatched=UnmatchedFade(mismatch, 8.0),
        bass_swap=BassSwapPlace(2.0, 1, 4),
    )
    assert faded.text() == (
        f"{mismatch.message()}; faded over 8 s at each song's own tempo instead of a "
        "beat-matched blend: 8.0 s requested: 16 beats of the outgoing grid (8.0 s); bass "
        "swapped over 2 bars on the downbeat 1 bars into the 4-bar overlap, where the mix "
        "changes sound least"
    )
    assert faded.to_json()["unmatched_tempo_fade"]["tempo_ratio"] == pytest.approx(120 / 92)


def test_a_rendered_transition_carries_the_length_reason_its_report_states() -> None:
    a, b = song(11, 126.0, 40.0), song(12, 124.0, 40.0)
    rendered = render_transition(
        excerpt("outgoing", a.audio, analysis_of(a)),
        excerpt("incoming", b.audio, analysis_of(b)),
        Style("auto", eq_bass_swap=True),
        Params(),
    )
    why = rendered.length_reason
    assert why.text() == rendered.report.length_reason
    assert why.asked.length == "auto" and why.auto is not None
    assert why.beats == why.auto.bars * 4 == rendered.report.overlap_bars * 4
    assert why.bass_swap is not None
    assert why.bass_swap.overlap_bars == rendered.report.overlap_bars
    swap_bar = (rendered.bass_swap_s - rendered.overlap_start_s) / (4 * why.beat_period_s)
    assert why.bass_swap.downbeat_bar == round(swap_bar)


@pytest.mark.parametrize("gain", [0.2, 4.0])
def test_the_limiter_reports_the_true_peak_it_leaves(gain: float) -> None:
    from segue.mixing.limiter import limit

    s = song(13, 124.0)
    loud = (gain * np.stack([s.audio, s.audio[::-1].copy()]) / np.abs(s.audio).max()).astype(
        np.float32
    )
    limited = limit(loud, RATE, -1.0)
    assert limited.peak_dbtp == pytest.approx(true_peak_dbtp(limited.audio), abs=1e-4)
    assert limited.peak_dbtp <= -1.0


def test_a_long_mix_is_limited_in_blocks_exactly_as_it_would_be_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocks keep a whole mix's limiter temporaries small; the result must not change.
    from segue.mixing import limiter

    s = song(13, 124.0)
    loud = np.tile(3.0 * np.stack([s.audio, s.audio[::-1]]) / np.abs(s.audio).max(), 6)
    loud = loud[:, : int(2.6 * limiter.BLOCK_S * RATE)].astype(np.float32)
    blocked = limiter.limit(loud, RATE, -1.0)
    monkeypatch.setattr(limiter, "BLOCK_S", 1e9)  # one block: the whole at once
    whole = limiter.limit(loud, RATE, -1.0)
    assert np.abs(blocked.audio - whole.audio).max() < 1e-6
    assert blocked.peak_dbtp == pytest.approx(whole.peak_dbtp, abs=1e-6)
    assert blocked.peak_dbtp <= -1.0
    in_place = limiter.limit(loud, RATE, -1.0, in_place=True)
    assert in_place.audio is loud
