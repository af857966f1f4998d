"""Traktor NML: parsed back with a real XML parser and held against a real Traktor file.

REAL_LAYOUT lists the elements, and their attributes, of a real Traktor collection.nml
(NML VERSION 19): the excerpt in TraktorBuddy's collection test, plus ALBUM TITLE and INFO
COMMENT, which Erik Minekus's traktor-scripts read from real collections. Everything the export
writes must be named as there.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from test_export_fixtures import STEADY_SONGS, analysis_of, awkward_copy, metadata

from segue.export.track import TrackFacts, track_facts
from segue.export.traktor import write_traktor

REAL_LAYOUT: dict[str, set[str]] = {
    "NML": {"VERSION"},
    "HEAD": {"COMPANY", "PROGRAM"},
    "MUSICFOLDERS": set(),
    "COLLECTION": {"ENTRIES"},
    "ENTRY": {"MODIFIED_DATE", "MODIFIED_TIME", "LOCK", "LOCK_MODIFICATION_TIME", "AUDIO_ID",
              "TITLE", "ARTIST"},
    "LOCATION": {"DIR", "FILE", "VOLUME", "VOLUMEID"},
    "ALBUM": {"TITLE", "TRACK"},
    "MODIFICATION_INFO": {"AUTHOR_TYPE"},
    "INFO": {"BITRATE", "GENRE", "RATING", "REMIXER", "COVERARTID", "KEY", "PLAYCOUNT",
             "PLAYTIME", "PLAYTIME_FLOAT", "RANKING", "IMPORT_DATE", "LAST_PLAYED",
             "RELEASE_DATE", "FLAGS", "FILESIZE", "COMMENT"},
    "TEMPO": {"BPM", "BPM_QUALITY"},
    "LOUDNESS": {"PEAK_DB", "PERCEIVED_DB", "ANALYZED_DB"},
    "MUSICAL_KEY": {"VALUE"},
    "CUE_V2": {"NAME", "DISPL_ORDER", "TYPE", "START", "LEN", "REPEATS", "HOTCUE"},
    "PLAYLISTS": set(),
    "NODE": {"TYPE", "NAME"},
    "SUBNODES": {"COUNT"},
    "PLAYLIST": {"ENTRIES", "TYPE", "UUID"},
    "PRIMARYKEY": {"TYPE", "KEY"},
}  # fmt: skip
# Where each element sits in the real file.
REAL_PARENTS = {
    "HEAD": "NML", "MUSICFOLDERS": "NML", "COLLECTION": "NML", "PLAYLISTS": "NML",
    "LOCATION": "ENTRY", "ALBUM": "ENTRY", "INFO": "ENTRY", "TEMPO": "ENTRY",
    "MUSICAL_KEY": "ENTRY", "CUE_V2": "ENTRY", "SUBNODES": "NODE", "PLAYLIST": "NODE",
    "PRIMARYKEY": "ENTRY",
}  # fmt: skip
MS = 1.0  # Traktor counts milliseconds


def _one(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path)
    assert found is not None, f"no {path} in {element.tag}"
    return found


def _attr(element: ET.Element, name: str) -> str:
    value = element.get(name)
    assert value is not None, f"no {name} on {element.tag}"
    return value


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[TrackFacts], ET.Element]:
    folder = tmp_path_factory.mktemp("traktor")
    tracks = [
        track_facts(
            analysis_of(name),
            metadata(awkward_copy(name, folder), artist="Segue & Co", album="Ünïcode"),
        )
        for name in STEADY_SONGS
    ]
    out = folder / "set.nml"
    assert write_traktor(tracks, out, playlist="Friday set") == []
    assert out.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="no" ?>')
    return tracks, ET.parse(out).getroot()


def test_every_element_and_attribute_is_named_as_in_a_real_traktor_file(
    exported: tuple[list[TrackFacts], ET.Element],
) -> None:
    _, root = exported
    assert root.tag == "NML" and root.get("VERSION") == "19"
    parents = {child: parent for parent in root.iter() for child in parent}
    for element in root.iter():
        assert element.tag in REAL_LAYOUT, element.tag
        assert set(element.attrib) <= REAL_LAYOUT[element.tag], (element.tag, element.attrib)
        if element.tag in REAL_PARENTS:
            assert parents[element].tag == REAL_PARENTS[element.tag], element.tag


def test_each_entry_has_location_tempo_key_and_an_autogrid_on_the_first_downbeat(
    exported: tuple[list[TrackFacts], ET.Element],
) -> None:
    tracks, root = exported
    entries = root.findall("COLLECTION/ENTRY")
    assert _attr(_one(root, "COLLECTION"), "ENTRIES") == str(len(tracks)) == str(len(entries))
    for facts, entry in zip(tracks, entries, strict=True):
        location = _one(entry, "LOCATION")
        assert location.get("FILE") == facts.path.rsplit("/", 1)[1]
        assert _attr(location, "DIR").endswith("/:Música nueva/:")
        assert facts.grid is not None and facts.key is not None
        assert float(_attr(_one(entry, "TEMPO"), "BPM")) == pytest.approx(
            facts.grid.mean_bpm, abs=1e-4
        )
        value = facts.key.tonic_pitch_class + (12 if facts.key.mode == "minor" else 0)
        assert _attr(_one(entry, "MUSICAL_KEY"), "VALUE") == str(value)
        assert _attr(_one(entry, "INFO"), "KEY") == facts.key.musical
        grids = [c for c in entry.findall("CUE_V2") if c.get("TYPE") == "4"]
        assert len(grids) == 1 and grids[0].get("NAME") == "AutoGrid"
        assert float(_attr(grids[0], "START")) == pytest.approx(
            facts.grid.first_downbeat_s * 1000, abs=MS
        )


def test_cues_are_in_milliseconds_on_their_pads(
    exported: tuple[list[TrackFacts], ET.Element],
) -> None:
    tracks, root = exported
    for facts, entry in zip(tracks, root.findall("COLLECTION/ENTRY"), strict=True):
        cues = [c for c in entry.findall("CUE_V2") if c.get("TYPE") == "0"]
        assert len(cues) == len(facts.markers)
        for cue, marker in zip(cues, facts.markers, strict=True):
            assert float(_attr(cue, "START")) == pytest.approx(marker.time_s * 1000.0, abs=MS)
            assert cue.get("HOTCUE") == ("-1" if marker.hot_cue is None else str(marker.hot_cue))
            assert cue.get("NAME") == marker.name and cue.get("LEN") == "0.000000"


def test_the_playlist_refers_to_each_entry_by_volume_dir_and_file(
    exported: tuple[list[TrackFacts], ET.Element],
) -> None:
    tracks, root = exported
    node = _one(root, "PLAYLISTS/NODE")
    assert (node.get("TYPE"), node.get("NAME")) == ("FOLDER", "$ROOT")
    playlist = _one(node, "SUBNODES/NODE")
    assert (playlist.get("TYPE"), playlist.get("NAME")) == ("PLAYLIST", "Friday set")
    keys = [k.get("KEY") for k in playlist.findall("PLAYLIST/ENTRY/PRIMARYKEY")]
    locations = [_one(e, "LOCATION") for e in root.findall("COLLECTION/ENTRY")]
    assert keys == [
        _attr(loc, "VOLUME") + _attr(loc, "DIR") + _attr(loc, "FILE") for loc in locations
    ]
    assert _attr(_one(playlist, "PLAYLIST"), "ENTRIES") == str(len(tracks))


def test_a_grid_that_changes_tempo_is_left_out_of_traktor_which_says_why(tmp_path: Path) -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    beats = np.array([b.time_s for b in analysis.beats])
    change = next(
        i for i in range(len(beats) // 2, len(beats)) if analysis.beats[i].position_in_bar == 1
    )
    # The same beats played 10% faster from that bar on.
    faster = beats[change] + (beats[change:] - beats[change]) / 1.1
    for beat, t in zip(analysis.beats[change:], faster, strict=True):
        beat.time_s = float(t)
    facts = track_facts(analysis, metadata(awkward_copy(STEADY_SONGS[0], tmp_path)))
    assert facts.grid is not None and len(facts.grid.segments) == 2
    notes = write_traktor([facts], tmp_path / "two.nml")
    assert notes == [
        f"{facts.song_id}: no Traktor grid: the tempo changes 1 time(s) and Traktor keeps one "
        "tempo per track"
    ]
    entry = _one(ET.parse(tmp_path / "two.nml").getroot(), "COLLECTION/ENTRY")
    assert entry.find("TEMPO") is None
    assert all(c.get("TYPE") != "4" for c in entry.findall("CUE_V2"))
    assert "no Traktor grid" in _attr(_one(entry, "INFO"), "COMMENT")
