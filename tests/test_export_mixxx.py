"""Mixxx: cues and key go into a copy of the library; the user's own file is never changed.

The libraries here are built with Mixxx's own tables (test_export_fixtures.MIXXX_SCHEMA) and
filled as Mixxx fills them after scanning a folder.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from test_export_fixtures import MIXXX_SCHEMA as SCHEMA
from test_export_fixtures import STEADY_SONGS, analysis_of, awkward_copy, metadata

from segue.export.files import ExportError
from segue.export.mixxx import CUE_TYPE_HOT, CUE_TYPE_MAIN, ENGINE_CHANNELS, write_mixxx
from segue.export.track import TrackFacts, track_facts

RATE_HZ = 48000  # the packaged songs are 48 kHz Opus
USER_LOOP_PAD = 30
MS = 0.001


def _library(path: Path, songs: list[Path]) -> Path:
    """A Mixxx library that knows `songs`, each with a user's hot cue, loop and main cue."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for song in songs:
        cursor = con.execute(
            "INSERT INTO track_locations (location, filename, directory, filesize, fs_deleted,"
            " needs_verification) VALUES (?, ?, ?, ?, 0, 0)",
            (str(song), song.name, str(song.parent), song.stat().st_size),
        )
        cursor = con.execute(
            "INSERT INTO library (title, location, duration, samplerate, channels, cuepoint,"
            " mixxx_deleted, header_parsed, key, keys, keys_version, key_id)"
            " VALUES (?, ?, 30.0, ?, 2, 0, 0, 1, 'C', x'0801', 'KeyMap-1.0', 1)",
            (song.stem, cursor.lastrowid, RATE_HZ),
        )
        con.executemany(
            "INSERT INTO cues (track_id, type, position, length, hotcue, label, color)"
            " VALUES (?, ?, ?, ?, ?, ?, 16711680)",
            [
                (cursor.lastrowid, CUE_TYPE_HOT, 96000, 0, 0, "user's"),
                (cursor.lastrowid, 4, 192000, 96000, USER_LOOP_PAD, "user's loop"),
                (cursor.lastrowid, CUE_TYPE_MAIN, 48000, 0, -1, ""),
            ],
        )
    con.commit()
    con.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def songs(tmp_path: Path) -> list[tuple[Path, TrackFacts]]:
    out = []
    for name in STEADY_SONGS[:2]:
        path = awkward_copy(name, tmp_path / "music")
        out.append((path, track_facts(analysis_of(name), metadata(path))))
    return out


def test_the_copy_opens_with_sqlite_and_its_cue_rows_match_the_exported_cues(
    tmp_path: Path, songs: list[tuple[Path, TrackFacts]]
) -> None:
    live = _library(tmp_path / "mixxxdb.sqlite", [p for p, _ in songs])
    out = tmp_path / "mixxxdb.segue.sqlite"
    assert write_mixxx([f for _, f in songs], live, out) == []
    con = sqlite3.connect(out)
    for path, facts in songs:
        (track_id,) = con.execute(
            "SELECT library.id FROM library JOIN track_locations"
            " ON library.location = track_locations.id WHERE track_locations.location = ?",
            (str(path),),
        ).fetchone()
        rows = con.execute(
            "SELECT hotcue, position, length, label FROM cues WHERE track_id = ? AND type = ?"
            " ORDER BY hotcue",
            (track_id, CUE_TYPE_HOT),
        ).fetchall()
        expected = sorted(
            [(m.hot_cue, m) for m in facts.hot_cues]
            + [(2 + i, m) for i, m in enumerate(facts.memory_cues)],
            key=lambda pair: pair[0] or 0,  # pads of hot cues are never None
        )
        assert [r[0] for r in rows] == [pad for pad, _ in expected]
        for (pad, position, length, label), (_, marker) in zip(rows, expected, strict=True):
            assert position / (RATE_HZ * ENGINE_CHANNELS) == pytest.approx(marker.time_s, abs=MS)
            assert (length, label) == (0, marker.name), pad
        entry = next(m for m in facts.hot_cues if m.kind == "entry")
        main = con.execute(
            "SELECT position FROM cues WHERE track_id = ? AND type = ?", (track_id, CUE_TYPE_MAIN)
        ).fetchall()
        assert len(main) == 1
        assert main[0][0] / (RATE_HZ * ENGINE_CHANNELS) == pytest.approx(entry.time_s, abs=MS)
        (cuepoint,) = con.execute(
            "SELECT cuepoint FROM library WHERE id = ?", (track_id,)
        ).fetchone()
        assert cuepoint == pytest.approx(main[0][0])
        loop = con.execute(
            "SELECT label FROM cues WHERE track_id = ? AND hotcue = ?", (track_id, USER_LOOP_PAD)
        ).fetchall()
        assert loop == [("user's loop",)]
    con.close()


def test_the_key_is_written_as_text_and_chromatic_key_and_the_analysed_blob_cleared(
    tmp_path: Path, songs: list[tuple[Path, TrackFacts]]
) -> None:
    live = _library(tmp_path / "mixxxdb.sqlite", [p for p, _ in songs])
    out = tmp_path / "copy.sqlite"
    write_mixxx([f for _, f in songs], live, out)
    con = sqlite3.connect(out)
    for path, facts in songs:
        row = con.execute(
            "SELECT key, key_id, keys, keys_version, keys_sub_version FROM library"
            " JOIN track_locations ON library.location = track_locations.id"
            " WHERE track_locations.location = ?",
            (str(path),),
        ).fetchone()
        assert facts.key is not None
        minor = facts.key.mode == "minor"
        assert row == (
            facts.key.musical,
            facts.key.tonic_pitch_class + 1 + 12 * minor,
            None,
            None,
            None,
        )
    con.close()


def test_the_users_live_library_is_only_read(
    tmp_path: Path, songs: list[tuple[Path, TrackFacts]]
) -> None:
    live = _library(tmp_path / "mixxxdb.sqlite", [p for p, _ in songs])
    before = (_digest(live), live.stat().st_mtime_ns)
    write_mixxx([f for _, f in songs], live, tmp_path / "copy.sqlite")
    assert (_digest(live), live.stat().st_mtime_ns) == before
    with pytest.raises(ExportError, match="refusing to write into the Mixxx library itself"):
        write_mixxx([f for _, f in songs], live, live)
    assert (_digest(live), live.stat().st_mtime_ns) == before


def test_songs_mixxx_does_not_know_are_reported_and_none_known_is_an_error(
    tmp_path: Path, songs: list[tuple[Path, TrackFacts]]
) -> None:
    live = _library(tmp_path / "mixxxdb.sqlite", [songs[0][0]])
    out = tmp_path / "copy.sqlite"
    notes = write_mixxx([f for _, f in songs], live, out)
    assert notes == [f"{songs[1][1].song_id}: not in the Mixxx library ({songs[1][0]})"]
    empty = _library(tmp_path / "empty.sqlite", [])
    with pytest.raises(ExportError, match="none of the 2 song"):
        write_mixxx([f for _, f in songs], empty, tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()


def test_a_file_that_is_not_a_mixxx_library_is_refused_and_nothing_is_written(
    tmp_path: Path, songs: list[tuple[Path, TrackFacts]]
) -> None:
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n" * 100)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.executescript("CREATE TABLE library (id INTEGER);")
    con.close()
    for source in (not_sqlite, other):
        with pytest.raises(ExportError, match="not a Mixxx library"):
            write_mixxx([f for _, f in songs], source, tmp_path / "copy.sqlite")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "notes.txt",
        "other.sqlite",
    ]
