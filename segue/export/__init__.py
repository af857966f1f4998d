"""Exports into DJ software: beat grids, cues, keys and planned sets where DJs keep them.

One module per format, all writing the same facts (`track.TrackFacts`: path, tempo, grid,
key, section memory cues and entry/exit hot cues) that `track.track_facts` takes once from a
song's analysis and metadata:

- `rekordbox`: Rekordbox XML (DJ_PLAYLISTS), written with pyrekordbox;
- `traktor`: Traktor NML;
- `mixxx`: cues and key in a copy of a Mixxx library (mixxxdb.sqlite);
- `m3u`: M3U8 playlists;
- `cue`: CD cue sheets of rendered mixes.

`sources` reads songs from a folder of analysis JSON files or the matcher; `grid` fits the
beat grid (or says why a song gets none); `paths` spells file locations for each program;
`files` writes every output whole or not at all.

Example::

    from segue.export import export_tracks, ExportOptions
    from segue.export.sources import load_folder
    from segue.export.track import track_facts

    tracks = [track_facts(s.analysis, s.metadata) for s in load_folder(Path("analyses"))]
    notes = export_tracks("rekordbox", tracks, Path("segue.xml"), ExportOptions("My set"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from segue.export.files import ExportError
from segue.export.paths import DEFAULT_TRAKTOR_VOLUME
from segue.export.track import KeyNotation, NoteTopic, TrackFacts

Format = Literal["rekordbox", "traktor", "mixxx", "m3u"]
FORMATS: tuple[Format, ...] = get_args(Format)
# Which of a song's notes matter in each format: M3U holds no grid, key or cues, and Mixxx
# gets no grid from Segue.
_TOPICS: dict[Format, tuple[NoteTopic, ...]] = {
    "rekordbox": ("grid", "key", "cues"),
    "traktor": ("grid", "key", "cues"),
    "mixxx": ("key", "cues"),
    "m3u": (),
}


@dataclass(frozen=True)
class ExportOptions:
    # Name of a playlist holding the songs in order (M3U files are always one playlist).
    playlist: str | None = None
    key_notation: KeyNotation = "musical"
    # Traktor's name of the volume that paths outside /Volumes/ are on (macOS start-up disk).
    traktor_volume: str = DEFAULT_TRAKTOR_VOLUME
    # The Mixxx library (mixxxdb.sqlite) that the Mixxx export copies.
    mixxx_library: Path | None = None


def export_tracks(
    fmt: Format, tracks: Sequence[TrackFacts], out: Path, options: ExportOptions
) -> list[str]:
    """Writes `tracks` to `out` in format `fmt`: the whole file or, on ExportError, nothing.

    Returns what the export left out or assumed, one line per song and reason.
    """
    if not tracks:
        raise ExportError("no songs to export")
    notes = [f"{t.song_id}: {n.text}" for t in tracks for n in t.notes if n.topic in _TOPICS[fmt]]
    if fmt == "rekordbox":
        from segue.export.rekordbox import write_rekordbox

        write_rekordbox(tracks, out, playlist=options.playlist, key_notation=options.key_notation)
    elif fmt == "traktor":
        from segue.export.traktor import write_traktor

        notes += write_traktor(
            tracks, out, playlist=options.playlist, key_notation=options.key_notation,
            start_up_volume=options.traktor_volume,
        )  # fmt: skip
    elif fmt == "mixxx":
        from segue.export.mixxx import write_mixxx

        if options.mixxx_library is None:
            raise ExportError("the Mixxx export needs the Mixxx library to copy (mixxxdb.sqlite)")
        notes += write_mixxx(tracks, options.mixxx_library, out)
    else:
        from segue.export.m3u import write_m3u

        write_m3u(tracks, out, playlist=options.playlist)
    return notes


__all__ = ["FORMATS", "ExportError", "ExportOptions", "Format", "export_tracks"]
