"""`segue studio invite` and `segue studio export` on a real SQLite database, and `segue studio
serve` as its own process beside a real matcher."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from matcher_fixtures import free_port
from studio_fixtures import served_matcher_library

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


def wait_for(url: str, ready: Callable[[httpx.Response], bool], limit_s: float = 60.0
             ) -> httpx.Response:
    """The first answer from `url` that `ready` accepts (connection errors retried)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            response = httpx.get(url, timeout=5)
            if ready(response):
                return response
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready in {limit_s:g} s")


def test_serve_cuts_the_librarys_clips_ahead_and_reports_it(
        tmp_path: Path, music_tracks: list[Path]) -> None:
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "SEGUE_STUDIO_DATA_DIR": str(tmp_path / "studio"),
           "SEGUE_STUDIO_SHORT_CLIPS": "1", "SEGUE_STUDIO_CLIP_S": "0.6",
           "SEGUE_STUDIO_CLIP_STARTS": "2", "SEGUE_STUDIO_METRICS_PORT": str(metrics_port)}
    with served_matcher_library(tmp_path / "matcher", music_tracks[:4], 2.0) as (_, address):
        server = subprocess.Popen([sys.executable, "-m", "segue.cli", "studio", "serve",
                                   "--matcher", address, "--port", str(port)], env=env)
        try:
            health = wait_for(f"http://127.0.0.1:{port}/healthz",
                              lambda r: r.status_code == 200 and r.json()["clips_warm"][
                                  "finished"]).json()
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        finally:
            server.terminate()
            # uvicorn shuts down gracefully, then re-raises the signal it caught
            assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    warm = health["clips_warm"]
    assert health["songs"] == 4 and warm["failed"] == 0
    assert 8 <= warm["total"] == warm["done"] <= 4 * 4  # two starts a song, gold pairs' too
    assert len(list((tmp_path / "studio" / "clips").glob("*.opus"))) == warm["total"]
    assert f'segue_studio_clips_warm{{state="done"}} {float(warm["total"])}' in metrics


def test_warm_cuts_the_library_grid_into_the_cache_and_a_second_run_finds_it_there(
        tmp_path: Path, music_tracks: list[Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"SEGUE_STUDIO_DATA_DIR": str(tmp_path / "studio"),
                        "SEGUE_STUDIO_SHORT_CLIPS": "1", "SEGUE_STUDIO_CLIP_S": "0.6",
                        "SEGUE_STUDIO_CLIP_STARTS": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SEGUE_STUDIO_DB_URL", raising=False)
    clips = tmp_path / "studio" / "clips"
    with served_matcher_library(tmp_path / "matcher", music_tracks[:4], 2.0) as (_, address):
        assert segue(["studio", "warm", "--matcher", address, "--report-every", "0.5"]) == 0
        first = capsys.readouterr().out
        made = {p.name: p.stat().st_mtime_ns for p in clips.glob("*.opus")}
        assert segue(["studio", "warm", "--matcher", address]) == 0
        again = capsys.readouterr().out
    total = len(made)
    assert 8 <= total <= 4 * 4  # two starts a song, and the gold pairs' clips
    # The last line is the summary (the in-process matcher logs to stdout before it).
    assert first.splitlines()[-1].startswith(f"{total} of {total} clips in the cache, 0 failed")
    assert again.splitlines()[-1].startswith(f"{total} of {total} clips in the cache, 0 failed")
    assert {p.name: p.stat().st_mtime_ns for p in clips.glob("*.opus")} == made  # not cut again


def test_warm_and_serve_fail_in_one_line_without_a_matcher(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGUE_STUDIO_DATA_DIR", str(tmp_path))
    address = f"127.0.0.1:{free_port()}"
    assert segue(["studio", "warm", "--matcher", address]) == 1
    assert f"matcher at {address}: ListSongs failed: unavailable" in capsys.readouterr().err
    assert segue(["studio", "serve", "--matcher", address]) == 1
    assert "Traceback" not in (err := capsys.readouterr().err) and "ListSongs failed" in err
    assert segue(["studio", "warm", "--report-every", "0"]) == 1
    assert "--report-every" in capsys.readouterr().err
