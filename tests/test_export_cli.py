"""`segue export` and `segue playlist --export`: from a folder of analyses or a real matcher on
loopback, to files DJ software reads; bad input fails clearly and leaves no file behind."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pyrekordbox.rbxml import RekordboxXml
from test_export_fixtures import (
    MIXXX_SCHEMA,
    RATE_HZ,
    STEADY_SONGS,
    analysis_of,
    awkward_copy,
    held_tone_analysis,
    metadata,
    write_analysis_json,
)

from segue.cli import main as segue
from segue.config import ServerConfig
from segue.server import start_server
from services.matcher.edge_store import EdgeStore
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register
from services.matcher.store import VectorDims

TONE = "held-tone"


def _tone_wav(path: Path) -> Path:
    """20 s of a held 440 Hz tone as 16-bit WAV (the audio of `held_tone_analysis`)."""
    t = np.arange(20 * RATE_HZ) / RATE_HZ
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A folder of analyses as `segue analyze --out-dir` writes them, and each song's file."""
    root = tmp_path_factory.mktemp("export-cli")
    files = {name: awkward_copy(name, root / "music") for name in STEADY_SONGS[:2]}
    files[TONE] = _tone_wav(root / "music" / "held tone.wav")
    for name, path in files.items():
        analysis = held_tone_analysis() if name == TONE else analysis_of(name)
        write_analysis_json(root / "analyses", analysis, path)
    return root / "analyses", files


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_exports_to_rekordbox_and_says_which_song_has_no_grid_and_why(
    library: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, files = library
    out = tmp_path / "segue.xml"
    assert segue(["export", "rekordbox", "--analyses", str(folder), "-o", str(out),
                  "--playlist", "Folder set"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert f"wrote {out} (rekordbox): 3 song(s), 2 with a beat grid" in captured.out
    assert f"segue: note: {TONE}: no beat grid: the analysis found no beats" in captured.err
    xml = RekordboxXml(out)
    tracks = {t["Name"]: t for t in xml.get_tracks()}
    assert len(tracks) == 3 and tracks["held tone"].tempos == []
    assert all(len(tracks[files[n].stem].tempos) == 1 for n in STEADY_SONGS[:2])
    assert len(xml.get_playlist("Folder set").get_tracks()) == 3


def test_chosen_songs_become_an_m3u8_playlist_in_the_order_given(
    library: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    folder, files = library
    order = [TONE, STEADY_SONGS[1], STEADY_SONGS[0]]
    out = tmp_path / "set.m3u8"
    assert segue(["export", "m3u", *order, "--analyses", str(folder), "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[1] == "#EXTINF:20,held tone"
    assert lines[2::2] == [str(files[name]) for name in order]
    assert all(line.startswith("#EXTINF:") for line in lines[1::2])


def test_a_folder_exports_to_traktor_and_to_a_copy_of_a_mixxx_library(
    library: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    folder, files = library
    assert (
        segue(["export", "traktor", "--analyses", str(folder), "-o", str(tmp_path / "s.nml")]) == 0
    )
    assert (tmp_path / "s.nml").read_text(encoding="utf-8").count("<ENTRY ") == 3
    live = tmp_path / "mixxxdb.sqlite"
    con = sqlite3.connect(live)
    con.executescript(MIXXX_SCHEMA)
    loc = con.execute(
        "INSERT INTO track_locations (location) VALUES (?)", (str(files[STEADY_SONGS[0]]),)
    )
    con.execute("INSERT INTO library (location, samplerate) VALUES (?, 48000)", (loc.lastrowid,))
    con.commit()
    con.close()
    out = tmp_path / "mixxx-copy.sqlite"
    args = ["export", "mixxx", "--analyses", str(folder), "--mixxx-db", str(live), "-o", str(out)]
    assert segue(args) == 0
    con = sqlite3.connect(out)
    assert con.execute("SELECT COUNT(*) FROM cues WHERE type = 1").fetchone()[0] >= 3
    con.close()


def test_an_unknown_song_id_fails_clearly_and_leaves_the_earlier_output_alone(
    library: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = library
    out = tmp_path / "set.xml"
    out.write_text("the set from last week")
    code = segue(["export", "rekordbox", STEADY_SONGS[0], "no-such-song",
                  "--analyses", str(folder), "-o", str(out)])  # fmt: skip
    assert code == 1
    assert "unknown song id 'no-such-song'" in capsys.readouterr().err
    assert out.read_text() == "the set from last week"
    assert _leftovers(tmp_path) == ["set.xml"]


def test_a_folder_without_analyses_fails_clearly_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "analyses"
    empty.mkdir()
    (empty / "notes.json").write_text('{"comment": "not an analysis"}')
    out = tmp_path / "set.nml"
    assert segue(["export", "traktor", "--analyses", str(empty), "-o", str(out)]) == 1
    assert f"no analyses in {empty}" in capsys.readouterr().err
    assert _leftovers(tmp_path) == ["analyses"]


@pytest.fixture(scope="module")
def matcher(
    tmp_path_factory: pytest.TempPathFactory, library: tuple[Path, dict[str, Path]]
) -> Iterator[str]:
    """A real matcher on loopback storing the real songs with their file paths."""
    _, files = library
    analyses = [analysis_of(name) for name in STEADY_SONGS[:2]]
    dims = VectorDims(feel=len(analyses[0].feel), transition=len(analyses[0].segments[0].entry))
    store = SongLibrary(EdgeStore(tmp_path_factory.mktemp("matcher") / "edge", dims))
    for analysis in analyses:
        store.upsert(analysis, metadata(files[analysis.song_id], artist="Segue"))
    loop = asyncio.new_event_loop()
    config = ServerConfig(insecure_dev=True, service="matcher", host="127.0.0.1", grpc_port=0)
    server = loop.run_until_complete(
        start_server(config, register(MatcherServicer(store)), serve_metrics_port=False)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.port}"
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_songs_from_the_matcher_export_with_their_stored_grid_and_cues(
    matcher: str, library: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    _, files = library
    out = tmp_path / "matcher.xml"
    assert (
        segue(["export", "rekordbox", *STEADY_SONGS[:2], "--matcher", matcher, "-o", str(out)]) == 0
    )
    tracks = RekordboxXml(out).get_tracks()
    assert [t["Artist"] for t in tracks] == ["Segue", "Segue"]
    assert [t["Name"] for t in tracks] == [files[n].stem for n in STEADY_SONGS[:2]]
    assert all(len(t.tempos) == 1 and len(t.marks) >= 4 for t in tracks)


def test_an_unknown_song_id_in_the_matcher_fails_clearly_and_writes_nothing(
    matcher: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set.nml"
    assert (
        segue(
            ["export", "traktor", STEADY_SONGS[0], "missing", "--matcher", matcher, "-o", str(out)]
        )
        == 1
    )
    assert "unknown song id 'missing': not in the matcher's library" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_a_planned_playlist_is_exported_in_the_planned_order(
    matcher: str,
    library: tuple[Path, dict[str, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, files = library
    plan = ["playlist", STEADY_SONGS[1], "-n", "2", "--matcher", matcher]
    assert segue([*plan, "--json"]) == 0
    planned = [s["song_id"] for s in json.loads(capsys.readouterr().out)["steps"]]
    assert sorted(planned) == sorted(STEADY_SONGS[:2]) and planned[0] == STEADY_SONGS[1]
    out = tmp_path / "planned.xml"
    assert segue([*plan, "--export", "rekordbox", "-o", str(out)]) == 0, capsys.readouterr().err
    xml = RekordboxXml(out)
    node = xml.get_playlist(f"Segue from {STEADY_SONGS[1]}")
    tracks = {t["TrackID"]: t for t in xml.get_tracks()}
    ordered = [tracks[i] for i in node.get_tracks()]
    assert [t["Name"] for t in ordered] == [files[song_id].stem for song_id in planned]
    assert all(sorted(m["Num"] for m in t.marks if m["Num"] >= 0) == [0, 1] for t in ordered)
