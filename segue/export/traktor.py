"""Traktor NML: a collection (and a playlist) that Traktor imports.

Element and attribute names follow real Traktor files: TraktorBuddy's collection test holds an
excerpt of a real collection.nml (NML VERSION="19", HEAD COMPANY/PROGRAM, COLLECTION/ENTRY
with LOCATION DIR/FILE/VOLUME/VOLUMEID, INFO KEY/PLAYTIME/PLAYTIME_FLOAT/GENRE, TEMPO
BPM/BPM_QUALITY, MUSICAL_KEY VALUE, CUE_V2 NAME/DISPL_ORDER/TYPE/START/LEN/REPEATS/HOTCUE, and
PLAYLISTS/NODE/SUBNODES/PLAYLIST/ENTRY/PRIMARYKEY); ALBUM TITLE and INFO COMMENT are read from
real collections by Erik Minekus's traktor-scripts/rekordbox-export.py.

- CUE_V2 START and LEN are milliseconds. TYPE 0 is a cue and 4 the grid marker ("AutoGrid");
  HOTCUE is the pad, 0 to 7, or -1 for a cue on no pad.
- MUSICAL_KEY VALUE is 0-11 for C...B major and 12-23 for C...B minor (the real file pairs
  INFO KEY="3A", B-flat minor, with VALUE 22, and "12A", C-sharp minor, with 13).
- Traktor keeps one tempo per track (TEMPO BPM) and places its grid from the AutoGrid marker,
  here on the grid's first downbeat. A song whose grid changes tempo is exported without a
  grid (Rekordbox XML holds all of it).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from segue.export.files import atomic_output
from segue.export.paths import DEFAULT_TRAKTOR_VOLUME, TraktorLocation, traktor_location
from segue.export.track import KeyNotation, TrackFacts

NML_VERSION = "19"
CUE_TYPE_CUE = "0"
CUE_TYPE_GRID = "4"
NO_HOT_CUE = "-1"
# Traktor writes a fully trusted tempo with this quality.
BPM_QUALITY = "100.000000"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'


def write_traktor(
    tracks: Sequence[TrackFacts],
    out: Path,
    *,
    playlist: str | None = None,
    key_notation: KeyNotation = "musical",
    start_up_volume: str = DEFAULT_TRAKTOR_VOLUME,
) -> list[str]:
    """Writes the tracks (and a playlist of them, in order, when named) to `out`.

    Returns what Traktor could not take that the other formats do, one line per song.
    """
    root = ET.Element("NML", VERSION=NML_VERSION)
    ET.SubElement(root, "HEAD", COMPANY="www.native-instruments.com", PROGRAM="Traktor")
    ET.SubElement(root, "MUSICFOLDERS")
    collection = ET.SubElement(root, "COLLECTION", ENTRIES=str(len(tracks)))
    notes: list[str] = []
    locations = []
    for track in tracks:
        location = traktor_location(track.path, start_up_volume)
        notes += _add_entry(collection, track, location, key_notation)
        locations.append(location)
    _add_playlists(root, playlist, locations)
    ET.indent(root, space="  ")
    with atomic_output(out) as tmp:
        tmp.write_bytes(_DECLARATION + ET.tostring(root, encoding="utf-8") + b"\n")
    return notes


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:.6f}"


def _add_entry(
    collection: ET.Element, track: TrackFacts, location: TraktorLocation, notation: KeyNotation
) -> list[str]:
    entry = ET.SubElement(collection, "ENTRY", TITLE=track.title)
    if track.artist:
        entry.set("ARTIST", track.artist)
    ET.SubElement(
        entry, "LOCATION", DIR=location.dir, FILE=location.file, VOLUME=location.volume,
        VOLUMEID=location.volume,
    )  # fmt: skip
    if track.album:
        ET.SubElement(entry, "ALBUM", TITLE=track.album)
    single_tempo = track.grid is not None and len(track.grid.segments) == 1
    own = []
    if track.grid is not None and not single_tempo:
        own.append(
            f"no Traktor grid: the tempo changes {len(track.grid.segments) - 1} time(s) and "
            "Traktor keeps one tempo per track"
        )
    notes = [n.text for n in track.notes] + own
    info = ET.SubElement(
        entry, "INFO", PLAYTIME=str(round(track.duration_s)),
        PLAYTIME_FLOAT=f"{track.duration_s:.6f}",
    )  # fmt: skip
    if track.genre:
        info.set("GENRE", track.genre)
    if notes:
        info.set("COMMENT", "Segue: " + "; ".join(notes))
    if track.key is not None:
        info.set("KEY", track.key.text(notation))
    if track.grid is not None and single_tempo:
        ET.SubElement(entry, "TEMPO", BPM=f"{track.grid.mean_bpm:.6f}", BPM_QUALITY=BPM_QUALITY)
    if track.key is not None:
        value = track.key.tonic_pitch_class + (12 if track.key.mode == "minor" else 0)
        ET.SubElement(entry, "MUSICAL_KEY", VALUE=str(value))
    if track.grid is not None and single_tempo:
        _add_cue(entry, "AutoGrid", CUE_TYPE_GRID, track.grid.first_downbeat_s, NO_HOT_CUE)
    for marker in track.markers:
        pad = NO_HOT_CUE if marker.hot_cue is None else str(marker.hot_cue)
        _add_cue(entry, marker.name, CUE_TYPE_CUE, marker.time_s, pad)
    return [f"{track.song_id}: {n}" for n in own]


def _add_cue(entry: ET.Element, name: str, kind: str, time_s: float, hot_cue: str) -> None:
    ET.SubElement(
        entry, "CUE_V2", NAME=name, DISPL_ORDER="0", TYPE=kind, START=_ms(time_s),
        LEN=_ms(0.0), REPEATS="-1", HOTCUE=hot_cue,
    )  # fmt: skip


def _add_playlists(root: ET.Element, name: str | None, locations: list[TraktorLocation]) -> None:
    folder = ET.SubElement(ET.SubElement(root, "PLAYLISTS"), "NODE", TYPE="FOLDER", NAME="$ROOT")
    subnodes = ET.SubElement(folder, "SUBNODES", COUNT="1" if name else "0")
    if not name:
        return
    node = ET.SubElement(subnodes, "NODE", TYPE="PLAYLIST", NAME=name)
    playlist = ET.SubElement(
        node, "PLAYLIST", ENTRIES=str(len(locations)), TYPE="LIST", UUID=uuid.uuid4().hex
    )
    for location in locations:
        item = ET.SubElement(playlist, "ENTRY")
        ET.SubElement(item, "PRIMARYKEY", TYPE="TRACK", KEY=location.primary_key)


__all__ = ["write_traktor"]
