"""`segue studio invite` and `segue studio export` on a real SQLite database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from segue.cli import main as segue
from segue.studio.access import digest
from segue.studio.sql_store import SqlStore


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEGUE_STUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SEGUE_STUDIO_DB_URL", raising=False)
    return tmp_path


def test_invite_prints_a_link_whose_token_admits_that_many_annotators(
    data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert segue(["studio", "invite", "--label", "friends", "--uses", "3", "--days", "2",
                  "--base-url", "https://studio.example/"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://studio.example/join/")
    token = link.rsplit("/", 1)[1]
    store = SqlStore.open(f"sqlite:///{data_dir / 'studio.db'}")
    try:
        invite = store.invite(digest(token))
        assert invite is not None and (invite.label, invite.max_uses) == ("friends", 3)
        assert invite.expires_at - datetime.now(UTC) > timedelta(days=1.9)
    finally:
        store.close()


def test_invite_refuses_out_of_range_uses(data_dir: Path) -> None:
    assert segue(["studio", "invite", "--label", "x", "--uses", "0"]) == 1


def test_export_writes_an_empty_but_valid_file_before_any_answer(data_dir: Path) -> None:
    out = data_dir / "answers.json"
    assert segue(["studio", "export", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["answers"] == []
    csv_out = data_dir / "triplets.csv"
    assert segue(["studio", "export", "mecomp", "-o", str(csv_out)]) == 0
    assert csv_out.read_text().splitlines() == ["song1,song2,song3,anchor,positive"]
