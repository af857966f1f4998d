"""Songs to export come from a folder of analysis JSON files or from the matcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_fixtures import STEADY_SONGS, analysis_of, track_path, write_analysis_json

from segue.export.files import ExportError
from segue.export.sources import load_folder, stored_analysis
from segue.export.track import track_facts
from segue.v1 import matcher_pb2


def test_a_folder_gives_each_analysis_with_the_file_it_was_made_from(tmp_path: Path) -> None:
    for name in STEADY_SONGS:
        write_analysis_json(tmp_path, analysis_of(name), track_path(name))
    sources = load_folder(tmp_path)
    assert [s.analysis.song_id for s in sources] == sorted(STEADY_SONGS)
    for source in sources:
        assert source.analysis == analysis_of(source.analysis.song_id)
        assert source.metadata.uri == str(track_path(source.analysis.song_id))
        assert source.metadata.title == source.analysis.song_id


def test_songs_asked_for_come_in_the_order_asked(tmp_path: Path) -> None:
    for name in STEADY_SONGS:
        write_analysis_json(tmp_path, analysis_of(name), track_path(name))
    order = [STEADY_SONGS[2], STEADY_SONGS[0]]
    assert [s.analysis.song_id for s in load_folder(tmp_path, order)] == order


def test_a_json_list_of_analyses_is_read_too(tmp_path: Path) -> None:
    items = []
    for name in STEADY_SONGS[:2]:
        data = json.loads(
            write_analysis_json(tmp_path / "one", analysis_of(name), track_path(name)).read_text()
        )
        items.append(data)
    (tmp_path / "all.json").write_text(json.dumps(items))
    assert [s.analysis.song_id for s in load_folder(tmp_path)] == sorted(STEADY_SONGS[:2])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ('{"song_id": "x", "duration_s": "long"}', "not a Segue analysis"),
        ('{"song_id": "x", "duration_s": 3.0}', "does not say which file it was made from"),
    ],
)
def test_a_broken_analysis_file_is_named_in_the_error(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(ExportError, match=message) as error:
        load_folder(tmp_path)
    assert str(tmp_path / "x.json") in str(error.value)


def test_a_song_analysed_twice_in_one_folder_is_an_error(tmp_path: Path) -> None:
    analysis = analysis_of(STEADY_SONGS[0])
    write_analysis_json(tmp_path, analysis, track_path(STEADY_SONGS[0]))
    (tmp_path / "copy.json").write_text((tmp_path / f"{analysis.song_id}.json").read_text())
    with pytest.raises(ExportError, match="is analysed twice"):
        load_folder(tmp_path)


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such folder"):
        load_folder(tmp_path / "absent")


def test_a_song_from_an_older_matcher_exports_its_tempo_and_key_without_a_grid() -> None:
    full = analysis_of(STEADY_SONGS[0])
    stored = matcher_pb2.StoredSong(
        song_id=full.song_id,
        duration_s=full.duration_s,
        tempo_bpm=full.tempo.bpm,
        key=full.key,
        segments=full.segments,
        metadata=matcher_pb2.SongMetadata(uri="/music/a.mp3"),
    )
    analysis = stored_analysis(stored)
    assert (analysis.song_id, analysis.duration_s, analysis.tempo.bpm) == (
        full.song_id,
        full.duration_s,
        full.tempo.bpm,
    )
    facts = track_facts(analysis, stored.metadata)
    assert facts.grid is None and facts.bpm == full.tempo.bpm
    assert facts.key is not None and facts.key.camelot == full.key.camelot
    assert [n.text for n in facts.notes if n.topic == "grid"] == [
        "no beat grid: the analysis found no beats"
    ]


def test_a_song_from_a_current_matcher_exports_its_whole_stored_analysis() -> None:
    full = analysis_of(STEADY_SONGS[0])
    stored = matcher_pb2.StoredSong(song_id=full.song_id, analysis=full)
    assert stored_analysis(stored) == full
