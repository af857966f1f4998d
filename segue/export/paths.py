"""Where a song's file lives, spelled the way each DJ program expects it.

Songs reach the exporters as a path or a URI (the matcher's `SongMetadata.uri`, or the `file`
that `segue analyze` writes next to an analysis). `local_path` turns either into one absolute
path with forward slashes; the functions below spell that path for each program:

- Rekordbox XML: `TRACK/@Location` is a URL, "file://localhost/" followed by the percent-encoded
  UTF-8 path: "file://localhost/C:/Music/a%20b.mp3" on Windows and
  "file://localhost/Users/dj/a%20b.mp3" on macOS, one slash after "localhost" either way
  (pyrekordbox's `encode_path` docstring; Erik Minekus's traktor-scripts/rekordbox-export.py,
  which builds "file://localhost/" + quote("Volumes/...") from Traktor collections).
- Traktor NML: `LOCATION` splits a path into VOLUME (the drive "C:" or the macOS volume name),
  DIR (every folder prefixed by "/:", ending with "/:") and FILE, unescaped: a real collection
  has `<LOCATION DIR="/:Users/:didier/:Music/:Gigs/:" FILE="Tweet It Forever (DBN
  Bootleg).mp3" VOLUME="Macintosh HD" VOLUMEID="Macintosh HD">`, and its playlists refer to
  tracks by VOLUME + DIR + FILE ("Macintosh HD/:Users/:didier/:Music/:Gigs/:Tweet It ...").
  (TraktorBuddy's collection test, a real Traktor collection.nml excerpt.) Paths under
  /Volumes/NAME/ are on volume NAME; other absolute paths are on the start-up volume.
- Mixxx: `track_locations.location` is the absolute path with forward slashes, `directory` its
  folder and `filename` its name (Mixxx's res/schema.xml, revision 1).
- M3U8: one absolute path per line, UTF-8, unescaped.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segue.export.files import ExportError

# "C:/..." or "C:\..." at the start of a path.
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
# The volume macOS names a path on the start-up disk by, in Traktor's LOCATION/@VOLUME.
DEFAULT_TRAKTOR_VOLUME = "Macintosh HD"


def local_path(location: str, base: Path | None = None) -> str:
    """An absolute path with forward slashes from a path or a file:// URI.

    "file:///a/b%20c", "file://localhost/a/b%20c" and "/a/b c" all give "/a/b c";
    "file://localhost/C:/M/x.mp3" and "C:\\M\\x.mp3" give "C:/M/x.mp3". A relative path is
    taken relative to `base` (default: the working directory). Other URLs (http://...) and
    file URIs on other hosts raise ExportError: DJ programs need a local file.
    """
    text = location.strip()
    if not text:
        raise ExportError("no file location")
    if "://" in text or text.startswith("file:"):
        text = _path_of_file_uri(text)
    if _DRIVE.match(text):
        return text.replace("\\", "/")
    if not text.startswith("/"):
        text = os.path.join(str(base) if base is not None else os.getcwd(), text)
    return os.path.normpath(text)


def _path_of_file_uri(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() != "file":
        raise ExportError(f"not a local file: {uri!r} (DJ programs need a file path)")
    if parts.netloc not in ("", "localhost"):
        raise ExportError(f"file URI on another host: {uri!r}")
    path = urllib.parse.unquote(parts.path)
    # "/C:/Music/a.mp3": the slash before a drive letter belongs to the URI, not the path.
    return path[1:] if _DRIVE.match(path[1:]) else path


def rekordbox_track_path(path: str) -> str:
    """What to give pyrekordbox's `add_track` so that Location is what Rekordbox expects.

    pyrekordbox prefixes "file://localhost/" to the path it is given; an absolute POSIX path's
    own leading slash would make that "file://localhost//Users/...", so it is dropped here.
    """
    return path if _DRIVE.match(path) else path.lstrip("/")


def rekordbox_location(path: str) -> str:
    """The Location URL Rekordbox reads for `path` (see the module docstring)."""
    from pyrekordbox.rbxml import encode_path

    location: str = encode_path(rekordbox_track_path(path))
    return location


def path_of_rekordbox_location(location: str) -> str:
    """The absolute path a Rekordbox Location URL names: the inverse of rekordbox_location."""
    return local_path(location) if location.startswith("file:") else _absolute(location)


def _absolute(decoded: str) -> str:
    # pyrekordbox's decode_path drops "file://localhost/" whole, leading slash included.
    return decoded if _DRIVE.match(decoded) else "/" + decoded.lstrip("/")


@dataclass(frozen=True)
class TraktorLocation:
    """A path as Traktor's LOCATION element spells it."""

    volume: str
    dir: str  # "/:Users/:dj/:Music/:"
    file: str

    @property
    def primary_key(self) -> str:
        """How Traktor's playlists refer to the track: VOLUME + DIR + FILE."""
        return self.volume + self.dir + self.file


def traktor_location(path: str, start_up_volume: str = DEFAULT_TRAKTOR_VOLUME) -> TraktorLocation:
    """Traktor's VOLUME, DIR and FILE for an absolute path (see the module docstring)."""
    if _DRIVE.match(path):
        volume, rest = path[:2], path[2:]
    else:
        parts = PurePosixPath(path).parts
        on_volume = len(parts) > 3 and parts[1] == "Volumes"
        volume = parts[2] if on_volume else start_up_volume
        rest = "/" + "/".join(parts[3:] if on_volume else parts[1:])
    folders = [p for p in rest.replace("\\", "/").split("/")[:-1] if p]
    name = rest.replace("\\", "/").rsplit("/", 1)[-1]
    return TraktorLocation(volume, "".join(f"/:{f}" for f in folders) + "/:", name)


@dataclass(frozen=True)
class MixxxLocation:
    """A path as Mixxx's track_locations row holds it."""

    location: str
    directory: str
    filename: str


def mixxx_location(path: str) -> MixxxLocation:
    """Mixxx's location, directory and filename for an absolute path."""
    directory, _, filename = path.rpartition("/")
    return MixxxLocation(path, directory or "/", filename)


__all__ = [
    "DEFAULT_TRAKTOR_VOLUME",
    "MixxxLocation",
    "TraktorLocation",
    "local_path",
    "mixxx_location",
    "path_of_rekordbox_location",
    "rekordbox_location",
    "rekordbox_track_path",
    "traktor_location",
]
