"""Output files are written whole or not at all, with the permissions a plain open() gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from segue.files import atomic_output, write_atomically


def test_a_written_file_is_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "mix.cue", "FILE mix.mp3 MP3\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "mix.cue").stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "mix.json"
    write_atomically(out, b"{}\n")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("encoder failed")
    assert out.read_bytes() == b"{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.json"]


def test_a_missing_folder_is_reported_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        write_atomically(tmp_path / "absent" / "mix.wav", b"RIFF")
