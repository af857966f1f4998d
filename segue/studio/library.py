"""The songs the Studio draws clips from: the matcher's library, read once at start-up.

Each song needs a local audio file (its metadata's `uri`, a path or file:// URL) to cut clips
from, and its feel vector to choose active triplets; songs without a readable file are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from segue.client.matcher import MatcherClient
from segue.client.security import ClientSecurity
from segue.studio.choose import LibrarySong
from segue.v1 import matcher_pb2


@dataclass(frozen=True)
class StudioLibrary:
    """Songs with their audio files, by song id."""

    songs: tuple[LibrarySong, ...]
    files: dict[str, Path]

    def file(self, song_id: str) -> Path:
        return self.files[song_id]


def local_path(uri: str) -> Path | None:
    """The local file a song's uri names (a path or file:// URL), or None for other URLs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", ) or (len(parsed.scheme) == 1 and uri[1:2] == ":"):
        return Path(uri) if uri else None
    return None


def library_song(stored: matcher_pb2.StoredSong, min_duration_s: float
                 ) -> tuple[LibrarySong, Path] | None:
    """A stored song as the chooser sees it, or None when it cannot give a clip."""
    path = local_path(stored.metadata.uri)
    if path is None or not path.is_file() or stored.duration_s < min_duration_s:
        return None
    feel = np.asarray(stored.feel, dtype=np.float32) if len(stored.feel) else None
    return LibrarySong(song_id=stored.song_id, duration_s=stored.duration_s, feel=feel), path


async def load_library(address: str, security: ClientSecurity, *, min_duration_s: float
                       ) -> StudioLibrary:
    """Every usable song of the matcher at `address`, with feel vectors."""
    songs: list[LibrarySong] = []
    files: dict[str, Path] = {}
    async with MatcherClient(address, security=security) as client:
        async for stored in client.list_songs(with_vectors=True):
            usable = library_song(stored, min_duration_s)
            if usable is not None:
                songs.append(usable[0])
                files[usable[0].song_id] = usable[1]
    return StudioLibrary(tuple(songs), files)


__all__ = ["StudioLibrary", "library_song", "load_library", "local_path"]
