"""What an export writes for a song, taken once from its analysis: cues, names, key, notes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_export_fixtures import STEADY_SONGS, analysis_of, held_tone_analysis, metadata, track_path

from segue.export.track import MIN_KEY_CONFIDENCE, Note, TrackFacts, section_label, track_facts
from segue.v1 import common_pb2

SONG = STEADY_SONGS[1]


def _facts(
    analysis: common_pb2.SongAnalysis, entry_s: float | None = None, exit_s: float | None = None
) -> TrackFacts:
    return track_facts(analysis, metadata(track_path(SONG)), entry_s=entry_s, exit_s=exit_s)


def test_every_section_start_is_a_memory_cue_named_by_its_label() -> None:
    analysis = analysis_of(SONG)
    facts = _facts(analysis)
    assert [(m.time_s, m.name) for m in facts.memory_cues] == [
        (s.start_s, section_label(s)) for s in analysis.sections
    ]
    assert all(m.kind == "section" for m in facts.memory_cues)


def test_hot_cues_mark_the_entry_and_exit_that_open_and_close_the_longest_phrases() -> None:
    analysis = analysis_of(SONG)
    entries = [c for c in analysis.cue_points if c.kind == common_pb2.CUE_KIND_ENTRY]
    exits = [c for c in analysis.cue_points if c.kind == common_pb2.CUE_KIND_EXIT]
    longest_in = max(c.phrase_bars for c in entries)
    longest_out = max(c.phrase_bars for c in exits)
    entry, exit_ = sorted(_facts(analysis).hot_cues, key=lambda m: m.hot_cue or 0)
    assert (entry.hot_cue, entry.kind, exit_.hot_cue, exit_.kind) == (0, "entry", 1, "exit")
    assert entry.time_s == min(c.time_s for c in entries if c.phrase_bars == longest_in)
    assert exit_.time_s == max(c.time_s for c in exits if c.phrase_bars == longest_out)


def test_hot_cues_are_named_by_the_section_they_fall_in() -> None:
    analysis = analysis_of(SONG)
    for marker in _facts(analysis).hot_cues:
        playing = [s for s in analysis.sections if s.start_s <= marker.time_s + 0.001][-1]
        prefix = "in: " if marker.kind == "entry" else "out: "
        assert marker.name == prefix + section_label(playing)


def test_a_planned_set_puts_the_hot_cues_where_it_enters_and_leaves_the_song() -> None:
    analysis = analysis_of(SONG)
    facts = _facts(analysis, entry_s=8.0, exit_s=24.0)
    assert sorted((m.hot_cue, m.time_s) for m in facts.hot_cues) == [(0, 8.0), (1, 24.0)]


def test_a_plan_that_plays_a_song_from_its_start_to_its_end_keeps_its_best_cues() -> None:
    analysis = analysis_of(SONG)
    planned = _facts(analysis, entry_s=0.0, exit_s=analysis.duration_s)
    assert planned.hot_cues == _facts(analysis).hot_cues


def test_the_tempo_is_the_grids_and_the_key_is_named_both_ways() -> None:
    analysis = analysis_of(SONG)
    facts = _facts(analysis)
    assert facts.grid is not None and facts.bpm == facts.grid.mean_bpm
    assert facts.key is not None
    assert facts.key.camelot == analysis.key.camelot
    assert facts.key.text("camelot") == analysis.key.camelot
    assert facts.key.text("musical") in analysis.key.name.replace(" minor", "m").replace(
        " major", ""
    )
    assert facts.notes == ()


def test_a_held_tone_exports_without_grid_or_key_and_the_notes_say_why() -> None:
    facts = track_facts(held_tone_analysis(), metadata(Path("/music/held tone.wav")))
    assert facts.grid is None and facts.key is None
    assert facts.bpm == 0.0
    texts = {n.topic: n.text for n in facts.notes}
    assert texts["grid"] == "no beat grid: the analysis found no beats"
    assert texts["key"].startswith("no key: confidence") and str(MIN_KEY_CONFIDENCE) in texts["key"]


def test_a_song_without_cue_points_gets_no_hot_cues_and_says_so() -> None:
    analysis = analysis_of(SONG)
    del analysis.cue_points[:]
    facts = _facts(analysis)
    assert facts.hot_cues == ()
    assert Note("cues", "no hot cues: the analysis has no cue points") in facts.notes


@pytest.mark.parametrize(
    ("letter", "function", "label"),
    [
        ("B", common_pb2.SECTION_FUNCTION_CHORUS, "B chorus"),
        ("A'", common_pb2.SECTION_FUNCTION_UNSPECIFIED, "A'"),
        ("", common_pb2.SECTION_FUNCTION_INTRO, "intro"),
        ("", common_pb2.SECTION_FUNCTION_UNSPECIFIED, "section"),
    ],
)
def test_a_section_label_is_its_letter_and_function(
    letter: str, function: common_pb2.SectionFunction.ValueType, label: str
) -> None:
    section = common_pb2.Section(letter=letter, function=function)
    assert section_label(section) == label
