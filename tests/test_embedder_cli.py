"""`segue analyze`: files in, JSON analyses out, through the service or in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ThreadServer

from segue.cli import main


def test_local_analysis_writes_one_json_analysis_for_one_file(
    music_tracks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "a.json"
    assert main(["analyze", "--local", str(music_tracks[1]), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["song_id"] == music_tracks[1].stem
    assert data["duration_s"] > 20 and len(data["feel"]) > 0 and data["segments"]


def test_the_service_and_local_analysis_agree(
    embedder_server: ThreadServer, music_tracks: list[Path], tmp_path: Path,
) -> None:
    files = [str(p) for p in music_tracks[2:4]]
    assert main(["analyze", *files, "--embedder", embedder_server.address,
                 "--out-dir", str(tmp_path / "remote")]) == 0
    assert main(["analyze", *files, "--local", "--out-dir", str(tmp_path / "local")]) == 0
    for path in music_tracks[2:4]:
        remote = json.loads((tmp_path / "remote" / f"{path.stem}.json").read_text())
        local = json.loads((tmp_path / "local" / f"{path.stem}.json").read_text())
        assert remote["feel"] == pytest.approx(local["feel"], abs=1e-5)
        assert remote["duration_s"] == pytest.approx(local["duration_s"])


def test_plot_draws_a_png_per_file(music_tracks: list[Path], tmp_path: Path) -> None:
    assert main(["analyze", "--local", str(music_tracks[5]), "--plot", str(tmp_path / "plots"),
                 "-o", str(tmp_path / "a.json")]) == 0
    png = tmp_path / "plots" / f"{music_tracks[5].stem}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unreadable_file_fails_with_a_message_and_exit_code_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "not-audio.mp3"
    bad.write_text("hello")
    assert main(["analyze", "--local", str(bad)]) == 1
    assert "not-audio.mp3" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "flag", "value", "said"), [
    ("analyze", "--chunk-s", "0", "--chunk-s must be a positive number of seconds, got 0"),
    ("analyze", "--chunk-s", "nan", "--chunk-s must be a positive number of seconds, got nan"),
    ("analyze", "--jobs", "0", "--jobs must be at least 1"),
    ("index", "--chunk-s", "-1", "--chunk-s must be a positive number of seconds, got -1"),
])
def test_library_options_out_of_range_are_refused_before_any_work(
    command: str, flag: str, value: str, said: str, music_tracks: list[Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = str(music_tracks[0]) if command == "analyze" else str(music_tracks[0].parent)
    assert main([command, target, flag, value, "--manifest" if command == "index" else "-o",
                 str(tmp_path / "out.json")]) == 1
    assert f"segue: {said}" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
