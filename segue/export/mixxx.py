"""Mixxx: cues and key written into a copy of a Mixxx library (mixxxdb.sqlite).

The user's own library is only read (opened read-only and copied with SQLite's backup API, so
a running Mixxx does not disturb the copy); every change goes to the copy, which replaces the
output file only once it is complete. To use it, quit Mixxx and put the copy in place of
mixxxdb.sqlite (keep the old one). Rekordbox XML carries the same cues and the full beat grid
for programs that read it.

Tables and columns are Mixxx's own (res/schema.xml; src/library/dao/cuedao.cpp, trackdao.cpp;
src/track/cueinfo.h; src/proto/keys.proto):

- track_locations(id, location): location is the file's absolute path; library.location holds
  the id of its track_locations row. Only songs Mixxx already knows are changed: a song not in
  the library is reported, not added (Mixxx adds files itself, with all it reads from them).
- cues(track_id, type, position, length, hotcue, label, color): type 1 is a hot cue and 2 the
  main cue (mixxx::CueType); position and length are "engine samples", frames times the two
  engine channels, stored as REAL; hotcue is the pad, from 0, or -1; color is 0xRRGGBB.
  Segue's hot cues go to pads 0 and 1, its section cues to the pads after them, and the main
  cue to the best entry (also library.cuepoint). The track's earlier main cue and the cues on
  those pads are replaced.
- library.key is the key as text and key_id its ChromaticKey (1-12 C...B major, 13-24 C...B
  minor). The analysed key blob (keys, keys_version, keys_sub_version) is cleared: Mixxx
  prefers a blob over the text, and reads the text as a key set by the user.

The beat grid is not written: Mixxx keeps it as a protobuf blob of its own version, and
analyses a track again when it finds none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from segue.export.files import ExportError, atomic_output
from segue.export.paths import mixxx_location
from segue.export.track import KeyFacts, Marker, TrackFacts

CUE_TYPE_HOT = 1
CUE_TYPE_MAIN = 2
ENGINE_CHANNELS = 2
MAX_HOT_CUES = 36  # pads Mixxx 2.4 offers
# Mixxx's hot cue palette (schema.xml revision 32): green in, red out, blue sections.
_COLORS = {"entry": 0x32BE44, "exit": 0xC50A08, "section": 0x0044FF}
MAIN_CUE_COLOR = 0xFF8C00
REQUIRED_COLUMNS = {
    "track_locations": {"id", "location"},
    "library": {"id", "location", "samplerate", "cuepoint", "key", "key_id", "keys",
                "keys_version", "keys_sub_version"},
    "cues": {"id", "track_id", "type", "position", "length", "hotcue", "label", "color"},
}  # fmt: skip


def chromatic_key(key: KeyFacts) -> int:
    """Mixxx's ChromaticKey number of a key: 1 = C major ... 12 = B major, 13 = C minor ..."""
    return key.tonic_pitch_class + 1 + (12 if key.mode == "minor" else 0)


def write_mixxx(tracks: Sequence[TrackFacts], library: Path, out: Path) -> list[str]:
    """Writes a copy of the Mixxx library `library` with the tracks' cues and keys to `out`.

    Returns one line per song that could not be written. ExportError when `out` is the
    library itself, the library is not a Mixxx library, or none of the songs is in it.
    """
    if not library.is_file():
        raise ExportError(f"no Mixxx library at {library}")
    if out.resolve() == library.resolve() or (out.exists() and out.samefile(library)):
        raise ExportError(
            f"refusing to write into the Mixxx library itself ({library}): give another output"
        )
    with atomic_output(out) as tmp:
        _copy(library, tmp)
        con = sqlite3.connect(tmp)
        try:
            _check_schema(con, library)
            with con:
                results = [_write_track(con, t) for t in tracks]
        finally:
            con.close()
        if not any(found for found, _ in results):
            raise ExportError(
                f"none of the {len(tracks)} song(s) is in the Mixxx library {library}: add "
                "their folders in Mixxx, then export again"
            )
    return [note for _, note in results if note]


def _copy(library: Path, tmp: Path) -> None:
    try:
        source = sqlite3.connect(f"{library.resolve().as_uri()}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(tmp)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.DatabaseError as e:
        raise ExportError(f"{library}: not a Mixxx library ({e})") from e


def _check_schema(con: sqlite3.Connection, library: Path) -> None:
    for table, columns in REQUIRED_COLUMNS.items():
        found = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        lacking = sorted(columns - found)
        if lacking:
            raise ExportError(
                f"{library}: not a Mixxx library (table {table} lacks {', '.join(lacking)})"
            )


def _write_track(con: sqlite3.Connection, track: TrackFacts) -> tuple[bool, str]:
    """Writes one song's key and cues; returns whether Mixxx knows the song, and what could
    not be written ("" when all was)."""
    row = con.execute(
        "SELECT library.id, library.samplerate FROM library JOIN track_locations"
        " ON library.location = track_locations.id WHERE track_locations.location = ?",
        (mixxx_location(track.path).location,),
    ).fetchone()
    if row is None:
        return False, f"{track.song_id}: not in the Mixxx library ({track.path})"
    track_id, rate = int(row[0]), float(row[1] or 0)
    if track.key is not None:
        con.execute(
            "UPDATE library SET key = ?, key_id = ?, keys = NULL, keys_version = NULL,"
            " keys_sub_version = NULL WHERE id = ?",
            (track.key.musical, chromatic_key(track.key), track_id),
        )
    if rate <= 0:
        return True, f"{track.song_id}: no cues, Mixxx has not read the file's sample rate yet"
    _write_cues(con, track_id, _pads(track), rate)
    return True, ""


def _pads(track: TrackFacts) -> list[tuple[int, Marker]]:
    """(pad, marker) for the hot cues, then the section cues on the pads after them."""
    hot = [(m.hot_cue, m) for m in track.hot_cues if m.hot_cue is not None]
    first_free = max((pad for pad, _ in hot), default=-1) + 1
    sections = list(enumerate(track.memory_cues, start=first_free))
    return [(pad, m) for pad, m in hot + sections if pad < MAX_HOT_CUES]


def _write_cues(
    con: sqlite3.Connection, track_id: int, pads: list[tuple[int, Marker]], rate_hz: float
) -> None:
    def position(seconds: float) -> float:
        return seconds * rate_hz * ENGINE_CHANNELS

    numbers = ",".join(str(pad) for pad, _ in pads) or "-2"
    con.execute(
        f"DELETE FROM cues WHERE track_id = ? AND (type = ? OR hotcue IN ({numbers}))",
        (track_id, CUE_TYPE_MAIN),
    )
    insert = (
        "INSERT INTO cues (track_id, type, position, length, hotcue, label, color)"
        " VALUES (?, ?, ?, 0, ?, ?, ?)"
    )
    for pad, marker in pads:
        con.execute(
            insert,
            (track_id, CUE_TYPE_HOT, position(marker.time_s), pad, marker.name,
             _COLORS[marker.kind]),
        )  # fmt: skip
    entry = next((m for _, m in pads if m.kind == "entry"), None)
    if entry is not None:
        main = position(entry.time_s)
        con.execute(insert, (track_id, CUE_TYPE_MAIN, main, -1, "", MAIN_CUE_COLOR))
        con.execute("UPDATE library SET cuepoint = ? WHERE id = ?", (main, track_id))


__all__ = ["chromatic_key", "write_mixxx"]
