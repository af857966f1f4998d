"""The ledger of finished files: what a re-run or a resumed run may skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

from segue.library import Ledger
from segue.library.ledger import Entry, sha256_of


def _song(folder: Path, name: str = "a.ogg", content: bytes = b"song bytes") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def _finish(ledger: Ledger, path: Path, song_id: str = "a") -> None:
    info = path.stat()
    ledger.finished(path.name, path, song_id, info.st_size, info.st_mtime_ns)


def test_a_finished_file_is_unchanged_in_a_new_ledger_on_the_same_path(tmp_path: Path) -> None:
    song = _song(tmp_path)
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        _finish(ledger, song)
    with Ledger(tmp_path / "ledger.jsonl") as again:
        assert again.unchanged("a.ogg", song, "a")
        assert not again.unchanged("a.ogg", song, "another id")


def test_a_touched_file_with_the_same_content_stays_unchanged(tmp_path: Path) -> None:
    song = _song(tmp_path)
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        _finish(ledger, song)
        os.utime(song, ns=(1, 1))
        assert ledger.unchanged("a.ogg", song, "a")
        assert ledger.entries["a.ogg"].mtime_ns == 1  # recorded, so the hash is not redone


def test_a_file_with_new_content_of_the_same_size_is_changed(tmp_path: Path) -> None:
    song = _song(tmp_path)
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        _finish(ledger, song)
        song.write_bytes(b"SONG BYTES")
        os.utime(song, ns=(5, 5))
        assert not ledger.unchanged("a.ogg", song, "a")


def test_each_finished_file_is_on_disk_before_the_next_starts(tmp_path: Path) -> None:
    song = _song(tmp_path)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    _finish(ledger, song)
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()  # ledger still open
    assert [json.loads(line)["key"] for line in lines] == ["a.ogg"]
    ledger.close()


def test_a_torn_last_line_from_a_crash_is_ignored_and_compacted_away(tmp_path: Path) -> None:
    song = _song(tmp_path)
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        _finish(ledger, song)
    with (tmp_path / "ledger.jsonl").open("a") as f:
        f.write('{"key": "b.ogg", "size": 3')
    with Ledger(tmp_path / "ledger.jsonl") as again:
        assert set(again.entries) == {"a.ogg"}
    assert len((tmp_path / "ledger.jsonl").read_text().splitlines()) == 1


def test_the_older_one_object_index_manifest_is_read(tmp_path: Path) -> None:
    song = _song(tmp_path)
    info = song.stat()
    old = {"a.ogg": {"size": info.st_size, "mtime_ns": info.st_mtime_ns,
                     "sha256": sha256_of(song), "song_id": "a"}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with Ledger(tmp_path / "manifest.json") as ledger:
        assert ledger.entries == {
            "a.ogg": Entry(info.st_size, info.st_mtime_ns, sha256_of(song), "a")
        }
        assert ledger.unchanged("a.ogg", song, "a")
