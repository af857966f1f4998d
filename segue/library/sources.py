"""Which files a run covers, and the song id and output name each gets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = frozenset(
    {".mp3", ".flac", ".wav", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"}
)


@dataclass(frozen=True)
class Source:
    """One file to analyse.

    `key` names it in the ledger and the outputs: the path relative to the folder it was
    found in (posix), or the file name for a file given by itself.
    """

    path: Path
    key: str
    song_id: str

    @property
    def out_name(self) -> str:
        """Relative path of its JSON output (the key with .json for its suffix)."""
        return str(Path(self.key).with_suffix(".json"))


def folder_sources(folder: Path, *, id_by_path: bool) -> list[Source]:
    """Audio files under `folder` (by suffix; cover art and notes are not music), sorted.

    The song id is the relative path when `id_by_path` (the matcher's ids, stable across
    folders of equal names), else the file's stem.
    """
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or path.is_dir():
            continue
        key = path.relative_to(folder).as_posix()
        found.append(Source(path, key, key if id_by_path else path.stem))
    return found


def find_sources(inputs: list[Path], *, id_by_path: bool = False) -> list[Source]:
    """Files given directly are taken whatever their suffix; folders are walked."""
    found: list[Source] = []
    for item in inputs:
        if item.is_dir():
            found.extend(folder_sources(item, id_by_path=id_by_path))
        else:
            found.append(Source(item, item.name, item.stem))
    return found


__all__ = ["AUDIO_SUFFIXES", "Source", "find_sources", "folder_sources"]
