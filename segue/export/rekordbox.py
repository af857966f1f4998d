"""Rekordbox XML (`DJ_PLAYLISTS`), written with pyrekordbox's `RekordboxXml`.

The layout follows Pioneer's "rekordbox XML format" list, as pyrekordbox implements it
(pyrekordbox/rbxml.py, classes Track, Tempo, PositionMark and Node):

- COLLECTION/TRACK: Location (a file://localhost/ URL, see segue.export.paths), Name, Artist,
  Album, Genre, TotalTime (whole seconds), AverageBpm, Tonality (the key as text: musical,
  "Am", or Camelot, "8A", as the user's Rekordbox shows keys), and Comments saying what the
  export left out;
- TRACK/TEMPO, one per grid piece: Inizio (seconds), Bpm, Metro ("4/4") and Battito (the
  beat's 1-based number in its bar) - Rekordbox starts a new tempo at every TEMPO;
- TRACK/POSITION_MARK: Type 0 (cue) at Start seconds, Num -1 for memory cues and 0... for hot
  cues A...;
- PLAYLISTS/NODE: the ROOT folder, and a playlist (KeyType 0: tracks by TrackID) when one is
  asked for.

Times are written to the millisecond and tempi to 1/1000 BPM: Rekordbox's own exports use
three decimals for times, and a tempo rounded to 1/100 would drift by more than 10 ms over a
five-minute song.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pyrekordbox.rbxml import RekordboxXml, XmlDuplicateError

from segue.export.files import ExportError, atomic_output
from segue.export.paths import rekordbox_track_path
from segue.export.track import KeyNotation, TrackFacts

TIME_DECIMALS = 3
BPM_DECIMALS = 3
PRODUCT = "segue"
COMPANY = "Segue"


def write_rekordbox(
    tracks: Sequence[TrackFacts],
    out: Path,
    *,
    playlist: str | None = None,
    key_notation: KeyNotation = "musical",
) -> None:
    """Writes the tracks (and a playlist of them, in order, when named) to `out`."""
    xml = RekordboxXml(name=PRODUCT, version=_segue_version(), company=COMPANY)
    ids = [_add_track(xml, track, key_notation) for track in tracks]
    if playlist:
        node = xml.add_playlist(playlist, keytype="TrackID")
        for track_id in ids:
            node.add_track(track_id)
    with atomic_output(out) as tmp:
        xml.save(str(tmp))


def _segue_version() -> str:
    try:
        return version("segue")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0"


def _add_track(xml: RekordboxXml, track: TrackFacts, key_notation: KeyNotation) -> int:
    attributes: dict[str, str | int] = {"Name": track.title, "TotalTime": round(track.duration_s)}
    for name, value in (("Artist", track.artist), ("Album", track.album), ("Genre", track.genre)):
        if value:
            attributes[name] = value
    if track.bpm > 0:
        attributes["AverageBpm"] = f"{track.bpm:.2f}"
    if track.key is not None:
        attributes["Tonality"] = track.key.text(key_notation)
    if track.notes:
        attributes["Comments"] = "Segue: " + "; ".join(n.text for n in track.notes)
    try:
        element = xml.add_track(rekordbox_track_path(track.path), **attributes)
    except XmlDuplicateError as e:
        raise ExportError(f"{track.song_id}: {track.path} is exported twice") from e
    for segment in track.grid.segments if track.grid is not None else ():
        element.add_tempo(
            Inizio=round(segment.start_s, TIME_DECIMALS),
            Bpm=round(segment.bpm, BPM_DECIMALS),
            Metro=f"{segment.beats_per_bar}/4",
            Battito=segment.beat_in_bar,
        )
    for marker in track.markers:
        num = -1 if marker.hot_cue is None else marker.hot_cue
        element.add_mark(
            Name=marker.name, Type="cue", Start=round(marker.time_s, TIME_DECIMALS), Num=num
        )
    track_id: int = element["TrackID"]
    return track_id


__all__ = ["write_rekordbox"]
