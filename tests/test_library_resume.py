"""An interrupted `segue index` resumes and ends with the same store as an uninterrupted run
(a real matcher on its embedded Qdrant edge store, the real model, real files)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from matcher_fixtures import edge_store
from thread_server import ThreadServer

from segue.cli import main as segue
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register

REPO = Path(__file__).resolve().parent.parent
SONGS = 5


def _matcher(store: Path) -> tuple[ThreadServer[MatcherServicer], SongLibrary]:
    library = SongLibrary(edge_store(store))
    server = ThreadServer("matcher", lambda: MatcherServicer(library), register, grace_s=1.0)
    return server.start(), library


@pytest.fixture
def two_matchers(tmp_path: Path) -> Iterator[list[tuple[str, SongLibrary]]]:
    started = [_matcher(tmp_path / name) for name in ("whole", "resumed")]
    yield [(server.address, library) for server, library in started]
    for server, _ in started:
        server.stop()


def _stored(library: SongLibrary, song_ids: list[str]) -> dict[str, Any]:
    """Each song's stored payload and feel, without the per-write generation stamp."""
    out = {}
    for song_id in song_ids:
        record = library.song(song_id, with_feel=True)
        payload = {k: v for k, v in record.payload.items() if k not in ("generation",)}
        out[song_id] = (payload, record.feel)
    return out


def _killed_after_first_song(args: list[str], ledger: Path, signal_number: int) -> int:
    """Runs `segue` in a child and sends it `signal_number` once one song is recorded (SIGKILL:
    a crash, no clean-up at all; SIGINT: Ctrl-C); returns how many songs the ledger holds."""
    proc = subprocess.Popen([sys.executable, "-m", "segue.cli", *args], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.exists() and ledger.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal_number)
    proc.wait(60)
    return ledger.read_text().count("\n")


@pytest.mark.parametrize(
    ("signal_number", "jobs"),
    [(signal.SIGKILL, "1"), (signal.SIGINT, "2")],
    ids=["crash-one-process", "ctrl-c-worker-pool"],
)
def test_an_index_killed_mid_run_resumes_to_the_same_store_as_an_uninterrupted_run(
    signal_number: int,
    jobs: str,
    two_matchers: list[tuple[str, SongLibrary]],
    music_tracks: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "music"
    for i, track in enumerate(music_tracks[:SONGS]):
        (folder / f"disc{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(track, folder / f"disc{i % 2}" / track.name)
    (whole, whole_lib), (resumed, resumed_lib) = two_matchers
    common = ["index", str(folder), "--local", "-j", jobs]
    assert segue([*common, "--manifest", str(tmp_path / "whole.jsonl"), "--matcher", whole]) == 0
    capsys.readouterr()

    ledger = tmp_path / "resumed.jsonl"
    args = [*common, "--manifest", str(ledger), "--matcher", resumed]
    done_before = _killed_after_first_song(args, ledger, signal_number)
    assert 1 <= done_before < SONGS, "the run was not interrupted mid-way"
    assert segue(args) == 0
    assert f"stored {SONGS - done_before}, unchanged {done_before}" in capsys.readouterr().out

    song_ids = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.opus"))
    assert resumed_lib.song_count() == whole_lib.song_count() == SONGS
    assert _stored(resumed_lib, song_ids) == _stored(whole_lib, song_ids)
