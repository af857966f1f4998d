"""Files: writing outputs whole or not at all, and hashing their content.

Everything is written to a temporary file in the output's own folder (so the final rename stays
on one file system and is atomic) and renamed over the output only once writing succeeded. The
file gets the permissions a plain `open()` would give (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Bytes hashed per read.
HASH_BLOCK_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """Yields a temporary path next to `out`; renames it to `out` when the block succeeds.

    On any exception the temporary file is removed and `out` keeps its earlier content (or
    stays absent). Raises FileNotFoundError when `out`'s folder does not exist.
    """
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder for the output: {folder}")
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=folder)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(out: Path, data: bytes | str) -> None:
    """Writes `data` (text as UTF-8) to `out` whole, or leaves `out` as it was."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_output(out) as tmp:
        tmp.write_bytes(raw)


__all__ = ["atomic_output", "write_atomically"]
