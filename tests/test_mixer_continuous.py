"""Whole mixes: a playlist rendered as one continuous set, with its cue sheet."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import MessageToJson
from mixer_fixtures import RATE, analysis_of, song

from segue.audio import decode, encode
from segue.cli.mix import load_analyses, write_mix
from segue.mixing.continuous_mix import (
    ContinuousMix,
    MixTrack,
    render_continuous_mix,
    tracks_from_plan,
)
from segue.mixing.errors import MixInputError, TempoMismatch
from segue.mixing.limiter import true_peak_dbtp
from segue.mixing.style import Params, Style
from segue.v1 import matcher_pb2, mixer_pb2

TEMPOS = (124.0, 120.0, 92.0)  # the last is too slow to beat-match with the second


def playlist() -> list[MixTrack]:
    tracks = []
    for i, tempo in enumerate(TEMPOS):
        s = song(40 + i, tempo, 22.0)
        tracks.append(
            MixTrack(
                np.stack([s.audio, s.audio]).astype(np.float32),
                entry_s=0.0 if i == 0 else 1.0,
                title=f"song {i + 1}",
                song_id=f"synth-{i}",
                analysis=analysis_of(s),
            )
        )
    return tracks


@pytest.fixture(scope="module")
def mix() -> ContinuousMix:
    return render_continuous_mix(playlist(), Style("bars", bars=4, eq_bass_swap=True), Params())


def test_the_mix_plays_every_song_in_order_with_one_transition_between_each(
    mix: ContinuousMix,
) -> None:
    assert [c.title for c in mix.cues] == ["song 1", "song 2", "song 3"]
    assert len(mix.transitions) == 2
    starts = [c.start_s for c in mix.cues]
    assert starts[0] == 0.0 and starts == sorted(starts)
    for cue, tr in zip(mix.cues[1:], mix.transitions, strict=True):
        assert tr.overlap_start_s == pytest.approx(cue.heard_from_s)
        assert tr.overlap_start_s < cue.start_s < tr.overlap_end_s
    heard = sum(22.0 - c.song_entry_s for c in mix.cues)
    overlaps = sum(t.overlap_end_s - t.overlap_start_s for t in mix.transitions)
    # Songs start a little after their entry (on a downbeat) and the first is stretched.
    assert mix.duration_s == pytest.approx(heard - overlaps, abs=2.0)


def test_beat_matched_transitions_keep_beats_within_10_ms(mix: ContinuousMix) -> None:
    first = mix.transitions[0].report
    assert first.tempo_ratio == pytest.approx(124.0 / 120.0, rel=2e-3)
    assert first.beat_alignment_error_ms <= 10.0


def test_a_pair_beyond_the_stretch_limit_is_faded_at_its_own_tempos_and_says_so(
    mix: ContinuousMix,
) -> None:
    second = mix.transitions[1].report
    assert "beyond the stretch limit" in second.length_reason
    assert "own tempo" in second.length_reason
    assert np.isnan(second.beat_alignment_error_ms)


def test_the_fade_is_chosen_by_the_tempo_mismatch_errors_type_not_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reworded, the refusal still leads to the fade: the mix reads the error's type and facts.
    monkeypatch.setattr(TempoMismatch, "message", lambda self: "these tempos do not meet")
    mix = render_continuous_mix(playlist()[1:], Style("bars", bars=4), Params())
    (transition,) = mix.transitions
    assert transition.report.length_reason.startswith(
        "these tempos do not meet; faded over 8 s at each song's own tempo"
    )
    why = transition.length_reason
    assert why is not None and why.unmatched is not None
    mismatch = why.unmatched.mismatch
    assert (mismatch.bpm_outgoing, mismatch.bpm_incoming) == pytest.approx((120.0, 92.0), rel=2e-3)
    assert np.isnan(transition.report.beat_alignment_error_ms)


def test_the_json_sheet_gives_each_length_reason_as_data_next_to_its_text(
    mix: ContinuousMix,
) -> None:
    data = mix.to_json()
    halved, faded = (t["length_reason"] for t in data["transitions"])
    assert halved["halved"]["request"] == {"length": "bars", "mashup": False, "bars": 4}
    assert halved["chosen"]["bars"] == halved["halved"]["bars"] < 4
    assert faded["unmatched_tempo_fade"]["bpm_incoming"] == pytest.approx(92.0, rel=2e-3)
    assert faded["asked"] == {"length": "seconds", "mashup": False, "seconds": 8.0}
    assert "bass_swap" in faded
    for summary, sheet in zip(mix.transitions, data["transitions"], strict=True):
        assert summary.length_reason is not None
        assert sheet["report"]["length_reason"] == summary.length_reason.text()


def test_the_mix_is_at_the_target_loudness_and_never_reaches_the_ceiling(
    mix: ContinuousMix,
) -> None:
    assert mix.loudness_lufs == pytest.approx(-14.0, abs=1.0)
    assert true_peak_dbtp(mix.audio) <= -1.0 + 1e-6
    assert mix.true_peak_dbtp <= -1.0 + 1e-6


def test_between_transitions_each_song_plays_untouched(mix: ContinuousMix) -> None:
    tracks = playlist()
    tr = mix.transitions[0]
    level = 10 ** (mix.cues[1].level_db / 20)
    start = round(tr.end_s * RATE)
    resume = round(tr.incoming_resume_s * RATE)
    n = 2 * RATE
    played = mix.audio[:, start : start + n]
    original = tracks[1].audio[:, resume : resume + n] * level
    # The song itself, sample for sample, times the limiter's gain (which only attenuates).
    audible = np.abs(original) > 0.02
    ratio = played[audible] / original[audible]
    assert ratio.max() <= 1.0 + 1e-3 and ratio.min() > 0.5
    assert np.mean(ratio > 1.0 - 1e-3) > 0.5


def test_the_cue_sheet_lists_every_song_at_its_crossover_point(mix: ContinuousMix) -> None:
    sheet = mix.cue_sheet("set.mp3", "set")
    assert 'FILE "set.mp3" MP3' in sheet
    indexes = re.findall(r"INDEX 01 (\d\d):(\d\d):(\d\d)", sheet)
    assert len(indexes) == 3
    seconds = [int(m) * 60 + int(s) + int(f) / 75 for m, s, f in indexes]
    assert seconds == pytest.approx([c.start_s for c in mix.cues], abs=1 / 75)
    data = json.loads(mix.to_json_text())
    assert [s["song_id"] for s in data["songs"]] == ["synth-0", "synth-1", "synth-2"]
    assert len(data["transitions"]) == 2


def test_write_mix_puts_the_audio_cue_sheet_and_json_side_by_side(
    mix: ContinuousMix, tmp_path: Path
) -> None:
    out = tmp_path / "set.wav"
    written = write_mix(mix, out)
    assert written == [out, tmp_path / "set.cue", tmp_path / "set.json"]
    decoded = decode(out, RATE, channels=2)
    assert decoded.shape[0] / RATE == pytest.approx(mix.duration_s, abs=0.01)
    assert "TRACK 03 AUDIO" in (tmp_path / "set.cue").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.cue", "set.json", "set.wav"]


def test_a_matcher_plan_is_read_from_each_steps_file_with_its_cue_times(tmp_path: Path) -> None:
    plan = matcher_pb2.PlanPlaylistResponse()
    for i, tempo in enumerate(TEMPOS[:2]):
        path = tmp_path / f"s{i}.flac"
        path.write_bytes(encode(song(40 + i, tempo, 22.0).audio, RATE, "flac"))
        step = plan.steps.add(
            song_id=f"synth-{i}", entry_time_s=0.0 if i == 0 else 3.0, exit_time_s=21.0
        )
        step.metadata.uri, step.metadata.title = str(path), f"Song {i}"
    tracks = tracks_from_plan(plan, RATE)
    assert [t.title for t in tracks] == ["Song 0", "Song 1"]
    assert tracks[1].entry_s == 3.0 and tracks[1].exit_s == 21.0
    assert tracks[1].audio.shape == (2, song(41, TEMPOS[1], 22.0).audio.size)
    plan.steps[1].metadata.uri = str(tmp_path / "gone.flac")
    with pytest.raises(MixInputError, match=r"step 2 \(synth-1\): cannot read"):
        tracks_from_plan(plan, RATE)


def test_songs_without_analyses_are_beat_matched_from_the_structure_analysis() -> None:
    tracks = [replace(t, analysis=None) for t in playlist()[:2]]
    mix = render_continuous_mix(tracks, Style("bars", bars=4), Params())
    report = mix.transitions[0].report
    assert report.tempo_ratio == pytest.approx(124.0 / 120.0, rel=5e-3)
    assert report.beat_alignment_error_ms <= 10.0
    assert mix.cues[1].tempo_bpm == pytest.approx(120.0, rel=5e-3)


def test_analyses_are_read_by_song_id_for_the_songs_that_have_one(tmp_path: Path) -> None:
    s = song(40, TEMPOS[0], 22.0)
    (tmp_path / "synth-0.json").write_text(MessageToJson(analysis_of(s)))
    found = load_analyses(tmp_path, ["synth-0", "synth-1"])
    assert list(found) == ["synth-0"]
    assert len(found["synth-0"].beats) == len(s.beat_times_s)
    plan = matcher_pb2.PlanPlaylistResponse()
    for i in range(2):
        path = tmp_path / f"s{i}.flac"
        path.write_bytes(encode(song(40 + i, TEMPOS[i], 22.0).audio, RATE, "flac"))
        step = plan.steps.add(song_id=f"synth-{i}")
        step.metadata.uri = str(path)
    tracks = tracks_from_plan(plan, RATE, found)
    assert tracks[0].analysis is found["synth-0"] and tracks[1].analysis is None
    assert load_analyses(None, ["synth-0"]) == {}


def test_cli_options_for_a_playlist_render_as_a_continuous_style() -> None:
    from segue.cli import build_parser
    from segue.cli.mix import playlist_style

    def style_of(*options: str) -> Style:
        args = build_parser().parse_args(["mix", "--playlist", "seed", "-o", "set.mp3", *options])
        return playlist_style(args)

    assert style_of("--bars", "8") == Style(
        "bars", bars=8, curve=mixer_pb2.FADE_CURVE_EQUAL_POWER, eq_bass_swap=True
    )
    assert style_of() == Style("auto", curve=mixer_pb2.FADE_CURVE_EQUAL_POWER, eq_bass_swap=True)
    assert style_of(
        "--seconds", "12", "--curve", "s-curve", "--no-bass-swap", "--filter-sweep",
        "--tempo-ramp-bars", "4",
    ) == Style(
        "seconds", seconds=12.0, curve=mixer_pb2.FADE_CURVE_S_CURVE, filter_sweep=True,
        tempo_ramp_bars=4,
    )  # fmt: skip


def test_a_consumed_playlist_gives_up_each_songs_audio_and_the_same_mix(mix: ContinuousMix) -> None:
    # The mixer service consumes its decoded songs so a long mix never holds them all twice.
    tracks = playlist()
    consumed = render_continuous_mix(
        tracks, Style("bars", bars=4, eq_bass_swap=True), Params(), consume=True
    )
    assert [t.audio.shape[1] for t in tracks] == [0, 0, 0]
    assert [t.title for t in tracks] == ["song 1", "song 2", "song 3"]
    assert np.array_equal(consumed.audio, mix.audio)
    timing = {"render_s", "speed_x_realtime"}
    assert {k: v for k, v in consumed.to_json().items() if k not in timing} == {
        k: v for k, v in mix.to_json().items() if k not in timing}


def test_planar_audio_is_encoded_as_its_interleaved_copy_would_be() -> None:
    from segue.audio import ENCODE_CHUNK_FRAMES, encode_planar

    frames = 2 * ENCODE_CHUNK_FRAMES + 777  # several chunks and a partial one
    rng = np.random.default_rng(5)
    planar = (0.2 * rng.standard_normal((2, frames))).astype(np.float32)
    for fmt in ("wav", "flac"):
        assert encode_planar(planar, RATE, fmt) == encode(np.ascontiguousarray(planar.T), RATE, fmt)
