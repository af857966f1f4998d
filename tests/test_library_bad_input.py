"""Bad input to the library engine: each file is reported by path with a reason, and the run
goes on; the exit status is the number of failed files."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segue.cli import main
from segue.library import Failed, Source, find_sources
from segue.library import outcome as why
from segue.library.engine import LocalEngine

REPO = Path(__file__).resolve().parent.parent
PR_CAPBSET_DROP = 24  # prctl option (linux/prctl.h)


@pytest.fixture(scope="module")
def engine(stream_model_path: Path) -> LocalEngine:
    return LocalEngine(stream_model_path)


def _source(path: Path) -> Source:
    return Source(path, path.name, path.stem)


def _failure(engine: LocalEngine, path: Path) -> Failed:
    outcome = engine.analyze(_source(path))
    assert isinstance(outcome, Failed), f"{path.name} was analysed, expected a failure"
    return outcome


def _truncated_mp3(music_tracks: list[Path], target: Path) -> Path:
    whole = target.with_name("whole.mp3")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(music_tracks[0]),
                    "-t", "20", str(whole)], check=True)  # fmt: skip
    target.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return target


def test_a_text_file_named_mp3_is_undecodable(engine: LocalEngine, tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp3"
    bad.write_text("these are not the droids\n" * 50)
    failed = _failure(engine, bad)
    assert failed.reason == why.UNDECODABLE and "notes.mp3" in failed.detail


def test_a_file_cut_short_of_its_declared_duration_is_truncated(
    engine: LocalEngine, music_tracks: list[Path], tmp_path: Path
) -> None:
    failed = _failure(engine, _truncated_mp3(music_tracks, tmp_path / "cut.mp3"))
    assert failed.reason == why.TRUNCATED and "declares 20.0 s" in failed.detail


def test_a_zero_length_file_is_empty(engine: LocalEngine, tmp_path: Path) -> None:
    empty = tmp_path / "empty.flac"
    empty.touch()
    assert _failure(engine, empty).reason == why.EMPTY


def test_a_file_removed_after_listing_is_reported_vanished(
    engine: LocalEngine, music_tracks: list[Path], tmp_path: Path
) -> None:
    shutil.copy(music_tracks[0], tmp_path / "gone.opus")
    (source,) = find_sources([tmp_path])
    (tmp_path / "gone.opus").unlink()
    outcome = engine.analyze(source)
    assert isinstance(outcome, Failed) and outcome.reason == why.VANISHED


def test_a_folder_with_an_audio_suffix_is_not_a_file(engine: LocalEngine, tmp_path: Path) -> None:
    (tmp_path / "album.mp3").mkdir()
    assert _failure(engine, tmp_path / "album.mp3").reason == why.NOT_A_FILE


def test_an_image_with_an_audio_suffix_is_undecodable(engine: LocalEngine, tmp_path: Path) -> None:
    image = tmp_path / "cover.flac"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=32x32:d=1", "-frames:v", "1", "-f", "image2",
                    str(image)], check=True)  # fmt: skip
    assert _failure(engine, image).reason in (why.UNDECODABLE, why.NO_AUDIO)


def _without_root_file_access() -> None:
    """Runs in the child before exec: drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from
    the bounding set, so file permissions apply even to root (the tests may run as root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_file_without_read_permission_is_unreadable(
    music_tracks: list[Path], tmp_path: Path
) -> None:
    locked = tmp_path / "locked.opus"
    shutil.copy(music_tracks[0], locked)
    locked.chmod(0o000)
    summary = tmp_path / "summary.json"
    command = [sys.executable, "-m", "segue.cli", "analyze", "--local", "-j", "1",
               str(locked), "--summary", str(summary)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=_without_root_file_access, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = json.loads(summary.read_text())
    assert report["failures"] == [
        {"file": str(locked), "reason": why.UNREADABLE, "detail": "Permission denied"}
    ]
    assert f"{locked}: unreadable" in proc.stderr


def test_a_run_goes_on_past_bad_files_and_its_exit_status_counts_them(
    music_tracks: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    shutil.copy(music_tracks[1], folder / "good.opus")
    (folder / "text.mp3").write_text("hello")
    (folder / "zero.wav").touch()
    _truncated_mp3(music_tracks, folder / "cut.mp3")
    (folder / "liner notes.txt").write_text("not music, not counted")
    summary = tmp_path / "summary.json"
    code = main(
        [
            "analyze",
            "--local",
            "-j",
            "1",
            str(folder),
            "--out-dir",
            str(tmp_path / "out"),
            "--summary",
            str(summary),
        ]
    )
    assert code == 3
    report = json.loads(summary.read_text())
    reasons = {Path(f["file"]).name: f["reason"] for f in report["failures"]}
    assert reasons == {"text.mp3": why.UNDECODABLE, "zero.wav": why.EMPTY, "cut.mp3": why.TRUNCATED}
    assert report["analysed"] == 1 and (tmp_path / "out" / "good.json").is_file()
    err = capsys.readouterr().err
    assert all(str(folder / name) in err for name in reasons)
