"""Rekordbox XML round trip: written with pyrekordbox, read back with pyrekordbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyrekordbox.rbxml import RekordboxXml
from test_export_fixtures import (
    STEADY_SONGS,
    analysis_of,
    awkward_copy,
    held_tone_analysis,
    metadata,
    track_path,
)

from segue.export.grid import GRID_TOLERANCE_S
from segue.export.paths import path_of_rekordbox_location
from segue.export.rekordbox import write_rekordbox
from segue.export.track import TrackFacts, track_facts

MS = 0.001


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[TrackFacts], RekordboxXml]:
    folder = tmp_path_factory.mktemp("rekordbox")
    tracks = [
        track_facts(analysis_of(name), metadata(awkward_copy(name, folder), artist="Segue & Co"))
        for name in STEADY_SONGS
    ]
    out = folder / "segue.xml"
    write_rekordbox(tracks, out, playlist="Friday – set")
    return tracks, RekordboxXml(out)


def test_every_track_keeps_its_location_tempo_key_and_length(
    exported: tuple[list[TrackFacts], RekordboxXml],
) -> None:
    tracks, xml = exported
    read = xml.get_tracks()
    assert len(read) == len(tracks) == xml.num_tracks
    for facts, track in zip(tracks, read, strict=True):
        assert path_of_rekordbox_location(track["Location"]) == facts.path
        assert track["Name"] == facts.title and track["Artist"] == "Segue & Co"
        assert track["AverageBpm"] == pytest.approx(facts.bpm, abs=0.005)
        assert facts.key is not None and track["Tonality"] == facts.key.musical
        assert track["TotalTime"] == round(facts.duration_s)


def test_the_grid_reads_back_with_the_same_start_tempo_and_bar_position(
    exported: tuple[list[TrackFacts], RekordboxXml],
) -> None:
    tracks, xml = exported
    for facts, track in zip(tracks, xml.get_tracks(), strict=True):
        assert facts.grid is not None
        assert len(track.tempos) == len(facts.grid.segments) >= 1
        for tempo, segment in zip(track.tempos, facts.grid.segments, strict=True):
            assert tempo["Inizio"] == pytest.approx(segment.start_s, abs=MS)
            assert tempo["Bpm"] == pytest.approx(segment.bpm, abs=0.001)
            assert tempo["Battito"] == segment.beat_in_bar
            assert tempo["Metro"] == "4/4"


def test_the_grid_rekordbox_reads_lies_on_the_analysed_beats(
    exported: tuple[list[TrackFacts], RekordboxXml],
) -> None:
    _, xml = exported
    for name, track in zip(STEADY_SONGS, xml.get_tracks(), strict=True):
        beats = np.array([b.time_s for b in analysis_of(name).beats])
        tempo = track.tempos[0]
        period = 60.0 / tempo["Bpm"]
        # Each analysed beat against the nearest beat of the grid Rekordbox draws.
        k = np.round((beats - tempo["Inizio"]) / period)
        errors = np.abs(tempo["Inizio"] + k * period - beats)
        assert np.quantile(errors, 0.95) <= GRID_TOLERANCE_S


def test_cues_read_back_at_the_same_times_with_their_pads_and_names(
    exported: tuple[list[TrackFacts], RekordboxXml],
) -> None:
    tracks, xml = exported
    for facts, track in zip(tracks, xml.get_tracks(), strict=True):
        read = [(m["Start"], m["Num"], m["Name"], m["Type"]) for m in track.marks]
        assert len(read) == len(facts.markers)
        for (start, num, name, kind), marker in zip(read, facts.markers, strict=True):
            assert start == pytest.approx(marker.time_s, abs=MS)
            assert num == (-1 if marker.hot_cue is None else marker.hot_cue)
            assert name == marker.name and kind == "cue"
        hot = sorted((m["Num"], m["Name"][:4]) for m in track.marks if m["Num"] >= 0)
        assert hot == [(0, "in: "), (1, "out:")]
        memory = [m["Name"] for m in track.marks if m["Num"] == -1]
        assert memory[0].startswith("A") and len(memory) >= 2


def test_the_planned_playlist_lists_the_tracks_in_order(
    exported: tuple[list[TrackFacts], RekordboxXml],
) -> None:
    tracks, xml = exported
    playlist = xml.get_playlist("Friday – set")
    ids = [t["TrackID"] for t in xml.get_tracks()]
    assert playlist.get_tracks() == ids and len(ids) == len(tracks)


def test_camelot_notation_is_written_when_asked(tmp_path: Path) -> None:
    name = STEADY_SONGS[0]
    facts = track_facts(analysis_of(name), metadata(track_path(name)))
    write_rekordbox([facts], tmp_path / "c.xml", key_notation="camelot")
    assert facts.key is not None
    assert RekordboxXml(tmp_path / "c.xml").get_tracks()[0]["Tonality"] == facts.key.camelot


def test_a_song_without_a_confident_grid_has_no_tempo_and_says_why(tmp_path: Path) -> None:
    tone = held_tone_analysis()
    facts = track_facts(tone, metadata(track_path(STEADY_SONGS[0])))
    write_rekordbox([facts], tmp_path / "tone.xml")
    track = RekordboxXml(tmp_path / "tone.xml").get_tracks()[0]
    assert track.tempos == []
    assert track["AverageBpm"] is None and track["Tonality"] is None
    assert "no beat grid: the analysis found no beats" in track["Comments"]
