"""M3U8 playlists: the open format every player and DJ program imports.

Extended M3U, UTF-8: the first line is "#EXTM3U", then per song an "#EXTINF:<seconds>,<artist -
title>" line followed by the file's absolute path, unescaped (spaces and non-ASCII letters as
they are; a path is a whole line). "#PLAYLIST:<name>" names the playlist, an extension that
VLC and others read and the rest skip as a comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segue.export.files import atomic_output
from segue.export.track import TrackFacts


def m3u_text(tracks: Sequence[TrackFacts], playlist: str | None = None) -> str:
    """The playlist as M3U8 text."""
    lines = ["#EXTM3U"]
    if playlist:
        lines.append(f"#PLAYLIST:{_one_line(playlist)}")
    for track in tracks:
        lines.append(f"#EXTINF:{round(track.duration_s)},{_one_line(track.display_name)}")
        lines.append(track.path)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def write_m3u(tracks: Sequence[TrackFacts], out: Path, *, playlist: str | None = None) -> None:
    """Writes the tracks, in order, as an M3U8 playlist to `out`."""
    with atomic_output(out) as tmp:
        tmp.write_text(m3u_text(tracks, playlist), encoding="utf-8")


__all__ = ["m3u_text", "write_m3u"]
