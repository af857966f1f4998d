"""Writing export files whole or not at all.

An export either replaces its output file with a complete new one or leaves the file system
as it was: everything is written to a temporary file in the output's own folder (so the final
rename stays on one file system and is atomic) and renamed over the output only once the
writer has finished without error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from segue import files


class ExportError(Exception):
    """An export that cannot be made; the message is written for the person running it."""


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """`segue.files.atomic_output`, with a missing output folder reported as an ExportError."""
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"no such folder for the output: {folder}")
    with files.atomic_output(out) as tmp:
        yield tmp


__all__ = ["ExportError", "atomic_output"]
