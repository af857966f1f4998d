"""`segue index`, `next`, `similar` and `playlist` against a real matcher on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from matcher_fixtures import edge_store, make_library, metadata_for

from segue.cli import main as segue
from segue.config import ServerConfig
from segue.library import Ledger
from segue.server import start_server
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SongLibrary]]:
    """A matcher serving from its own event loop thread, so the CLI can block on it."""
    library = SongLibrary(edge_store(tmp_path_factory.mktemp("cli") / "edge"))
    for i, song in enumerate(make_library(12, seed=3)):
        library.upsert(song, metadata_for(i))
    loop = asyncio.new_event_loop()
    config = ServerConfig(insecure_dev=True, service="matcher", host="127.0.0.1", grpc_port=0)
    server = loop.run_until_complete(
        start_server(config, register(MatcherServicer(library)), serve_metrics_port=False)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.port}", library
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich otherwise wraps tables at 80 columns


def test_next_prints_a_table_of_ranked_candidates(
    matcher: tuple[str, SongLibrary], capsys: pytest.CaptureFixture[str]
) -> None:
    assert segue(["next", "song-000", "-k", "3", "--matcher", matcher[0]]) == 0
    out = capsys.readouterr().out
    assert "After song-000" in out and "transition" in out
    assert out.count("Title") == 3


def test_next_for_an_unknown_song_fails_with_not_found(
    matcher: tuple[str, SongLibrary], capsys: pytest.CaptureFixture[str]
) -> None:
    assert segue(["next", "missing", "--matcher", matcher[0]]) == 1
    assert "not_found" in capsys.readouterr().err


def test_similar_prints_json_when_asked(
    matcher: tuple[str, SongLibrary], capsys: pytest.CaptureFixture[str]
) -> None:
    assert segue(["similar", "song-001", "-k", "4", "--json", "--matcher", matcher[0]]) == 0
    songs = json.loads(capsys.readouterr().out)["songs"]
    assert len(songs) == 4 and all(s["song_id"] != "song-001" for s in songs)


def test_playlist_prints_the_planned_order(
    matcher: tuple[str, SongLibrary], capsys: pytest.CaptureFixture[str]
) -> None:
    code = segue(["playlist", "song-002", "-n", "5", "--json", "--matcher", matcher[0]])
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert code == 0
    assert steps[0]["song_id"] == "song-002" and len(steps) == 5


@pytest.mark.skipif(
    not (REPO / "models" / "segue_stream.onnx").exists(), reason="needs the trained model"
)
def test_index_stores_a_folder_and_skips_unchanged_files_on_the_next_run(
    matcher: tuple[str, SongLibrary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from immich_memories_music import tracks_dir

    folder = tmp_path / "music"
    (folder / "calm").mkdir(parents=True)
    for track in sorted(Path(tracks_dir()).rglob("calm_*.opus"))[:2]:
        shutil.copy(track, folder / "calm" / track.name)
    manifest = tmp_path / "manifest.json"
    args = ["index", str(folder), "--local", "--manifest", str(manifest), "--matcher", matcher[0]]
    assert segue(args) == 0
    assert "stored 2, unchanged 0" in capsys.readouterr().out
    assert segue(args) == 0
    assert "stored 0, unchanged 2" in capsys.readouterr().out
    with Ledger(manifest) as ledger:
        song_ids = [entry.song_id for entry in ledger.entries.values()]
    stored = matcher[1].song(song_ids[0])
    assert stored.payload["extra"] == {"folder": "calm"}
