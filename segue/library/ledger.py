"""What a run already finished, so a re-run or a resumed run skips it.

The ledger is a JSON-lines file: one line per finished file, appended and flushed as soon as
the file's result is stored, so Ctrl-C or a crash loses nothing already finished. A later line
for the same key wins; a torn last line (a crash mid-write) is ignored. Opening the ledger
rewrites it compacted (atomically). A file is unchanged when its size matches and either its
mtime or its content hash does (a copy or `touch` keeps the content).

The older index manifest (one JSON object of key -> entry) is read too, and rewritten as lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from segue.files import sha256_of, write_atomically


@dataclass(frozen=True)
class Entry:
    """A finished file: size in bytes, mtime in ns, content hash, the song id it got."""

    size: int
    mtime_ns: int
    sha256: str
    song_id: str

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256,
                "song_id": self.song_id}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(int(data["size"]), int(data["mtime_ns"]), str(data.get("sha256", "")),
                   str(data["song_id"]))  # fmt: skip


def _parse(text: str) -> dict[str, Entry]:
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    rows: list[tuple[str, Any]]
    # The older one-object manifest: key -> entry object (a one-line ledger has no such values).
    if isinstance(whole, dict) and whole and all(isinstance(v, dict) for v in whole.values()):
        rows = list(whole.items())
    else:
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
                rows.append((row["key"], row))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash
    entries: dict[str, Entry] = {}
    for key, row in rows:
        try:
            entries[str(key)] = Entry.from_json(row)
        except (KeyError, TypeError, ValueError):
            continue
    return entries


class Ledger:
    """The finished files of one (inputs, destination) pair; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries = _parse(path.read_text())
        except (OSError, UnicodeDecodeError):
            self.entries = {}  # absent or unreadable: everything is analysed again
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, "".join(self._line(k, e) for k, e in self.entries.items()))
        self._file: IO[str] = path.open("a")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _line(key: str, entry: Entry) -> str:
        return json.dumps({"key": key, **entry.as_json()}, sort_keys=True) + "\n"

    def unchanged(self, key: str, path: Path, song_id: str) -> bool:
        """True when `path` is the file last finished under `key` (and kept its song id)."""
        entry = self.entries.get(key)
        if entry is None or entry.song_id != song_id:
            return False
        try:
            info = path.stat()
        except OSError:
            return False
        if info.st_size != entry.size:
            return False
        if info.st_mtime_ns == entry.mtime_ns:
            return True
        if sha256_of(path) != entry.sha256:
            return False
        self.record(key, Entry(entry.size, info.st_mtime_ns, entry.sha256, song_id))
        return True

    def record(self, key: str, entry: Entry) -> None:
        """Appends a finished file; on disk before this returns (flushed and fsynced)."""
        self.entries[key] = entry
        self._file.write(self._line(key, entry))
        self._file.flush()
        os.fsync(self._file.fileno())

    def finished(self, key: str, path: Path, song_id: str, size: int, mtime_ns: int) -> None:
        """Records `path` as finished with the size and mtime it had when it was read."""
        try:
            digest = sha256_of(path)
        except OSError:
            digest = ""  # gone since it was read: only size and mtime can match later
        self.record(key, Entry(size, mtime_ns, digest, song_id))

    def close(self) -> None:
        self._file.close()


__all__ = ["Entry", "Ledger", "sha256_of"]
