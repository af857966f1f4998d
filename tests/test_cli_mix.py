"""`segue mix` end to end: two files, or a matcher playlist, through a real mixer or locally.

The servers are real (gRPC on loopback, the matcher on its edge engine); the songs are the
packaged real tracks, stored in the matcher with their file paths and analyses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mixer_fixtures import RATE, MixerThreadServer
from render_mix_fixtures import MIX_TRACKS, RealSong, matcher_with, mixer_asking, real_song
from thread_server import ThreadServer

from segue.audio import decode
from segue.cli import main as segue
from services.matcher.servicer import MatcherServicer

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

# Fields of the JSON sheet that time the render itself, so differ from run to run.
TIMING = ("render_s", "speed_x_realtime")


@pytest.fixture(scope="module")
def songs(music_tracks: list[Path]) -> list[RealSong]:
    return [real_song(music_tracks[i]) for i in MIX_TRACKS]


@pytest.fixture(scope="module")
def matcher(
    songs: list[RealSong], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer[MatcherServicer]]:
    server = matcher_with(songs, tmp_path_factory.mktemp("matcher"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mixer(matcher: ThreadServer[MatcherServicer]) -> Iterator[MixerThreadServer]:
    server = mixer_asking(matcher.address)
    yield server
    server.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """Runs `segue mix ...`; returns the exit code, the printed JSON (or None) and stderr."""
    code = segue(["mix", *argv])
    out, err = capsys.readouterr()
    # The in-process servers log to stdout too, before the command prints its JSON.
    lines = out.splitlines()
    start = max((i for i, line in enumerate(lines) if line == "{"), default=None)
    return code, None if start is None else json.loads("\n".join(lines[start:])), err


def playlist_argv(
    songs: list[RealSong], matcher: ThreadServer[MatcherServicer], out: Path, *extra: str
) -> list[str]:
    return [
        "--playlist", songs[0].song_id, "-n", "3", "-o", str(out), "--bars", "4",
        "--matcher", matcher.address, *extra,
    ]  # fmt: skip


def test_two_files_mixed_locally_give_the_transition_and_print_its_report(
    songs: list[RealSong], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pair.wav"
    argv = [str(songs[0].path), str(songs[1].path), "-o", str(out), "--bars", "4", "--local"]
    code, report, _ = run(capsys, *argv, "--plot", str(tmp_path / "pair.png"))
    assert code == 0
    assert report["overlap_bars"] == 4
    decoded = decode(out, RATE, channels=2)
    assert decoded.shape[0] / RATE == pytest.approx(report["duration_s"], abs=0.01)
    assert (tmp_path / "pair.png").stat().st_size > 10_000


def test_two_files_mixed_by_the_mixer_give_the_same_transition_as_locally(
    songs: list[RealSong], mixer: MixerThreadServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    pair = [str(songs[0].path), str(songs[1].path), "--bars", "4"]
    code, served, _ = run(capsys, *pair, "-o", str(tmp_path / "a.wav"), "--mixer", mixer.address)
    assert code == 0
    _, local, _ = run(capsys, *pair, "-o", str(tmp_path / "b.wav"), "--local")
    for report in (served, local):
        report.pop("render_speed_x_realtime")
    assert served == local
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


@pytest.fixture(scope="module")
def served_playlist(
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    mixer: MixerThreadServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any]]:
    """`segue mix --playlist` rendered by the mixer as WAV, with its plot."""
    folder = tmp_path_factory.mktemp("served")
    out = folder / "set.wav"
    code = segue(
        ["mix", *playlist_argv(songs, matcher, out, "--plot", str(folder / "set.png")),
         "--mixer", mixer.address]
    )  # fmt: skip
    assert code == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_a_playlist_is_rendered_by_the_mixer_with_its_cue_sheet_json_and_plot(
    served_playlist: tuple[Path, dict[str, Any]], songs: list[RealSong]
) -> None:
    out, sheet = served_playlist
    ids = [s["song_id"] for s in sheet["songs"]]
    assert len(ids) == 3 and ids[0] == songs[0].song_id
    assert set(ids) == {s.song_id for s in songs}
    cue = out.with_suffix(".cue").read_text()
    assert 'FILE "set.wav" WAVE' in cue
    assert re.findall(r'REM SEGUE_SONG_ID "([^"]+)"', cue) == ids
    assert [t["number"] for t in sheet["transitions"]] == [1, 2]
    for t in sheet["transitions"]:  # 4 bars, or halved where the planned cues leave less room
        assert t["report"]["overlap_bars"] in (1, 2, 4) and t["report"]["length_reason"]
    decoded = decode(out, RATE, channels=2)
    assert decoded.shape[0] / RATE == pytest.approx(sheet["duration_s"], abs=0.01)
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_playlist_rendered_locally_equals_the_one_the_mixer_rendered(
    served_playlist: tuple[Path, dict[str, Any]],
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    served, served_sheet = served_playlist
    out = tmp_path / "set.wav"
    code, summary, _ = run(capsys, *playlist_argv(songs, matcher, out, "--local"))
    assert code == 0
    assert summary["files"] == [str(out.with_suffix(x)) for x in (".wav", ".cue", ".json")]
    assert summary["songs"] == [s["title"] for s in served_sheet["songs"]]
    local_sheet = json.loads(out.with_suffix(".json").read_text())
    for sheet in (served_sheet, local_sheet):
        for key in TIMING:
            sheet.pop(key)
    assert local_sheet == served_sheet
    assert out.with_suffix(".cue").read_text() == served.with_suffix(".cue").read_text()
    assert out.read_bytes() == served.read_bytes()


def test_a_playlist_rendered_as_mp3_writes_the_mp3_its_cue_sheet_and_json(
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    mixer: MixerThreadServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "set.mp3"
    argv = playlist_argv(songs, matcher, out, "--mixer", mixer.address)
    argv[argv.index("-n") + 1] = "2"
    code, summary, _ = run(capsys, *argv)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.cue", "set.json", "set.mp3"]
    assert 'FILE "set.mp3" MP3' in out.with_suffix(".cue").read_text()
    assert len(summary["songs"]) == 2 and len(summary["transitions"]) == 1
    decoded = decode(out, RATE, channels=2)
    assert decoded.shape[0] / RATE == pytest.approx(summary["duration_s"], abs=0.06)


def test_an_output_with_an_unknown_suffix_fails_with_a_message_and_writes_nothing(
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, *playlist_argv(songs, matcher, tmp_path / "set.aiff"))
    assert code == 1 and out is None
    assert "output must end in .wav, .flac, .mp3 or .ogg, not '.aiff'" in err
    pair = [str(songs[0].path), str(songs[1].path), "-o", str(tmp_path / "pair.txt"), "--local"]
    code, out, err = run(capsys, *pair)
    assert code == 1 and "not '.txt'" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_seed_fails_naming_the_matcher_and_the_song(
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    mixer: MixerThreadServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = playlist_argv(songs, matcher, tmp_path / "set.wav", "--mixer", mixer.address)
    argv[argv.index("--playlist") + 1] = "no-such-song"
    code, out, err = run(capsys, *argv)
    assert code == 1 and out is None
    assert "matcher" in err and "not_found" in err and "no-such-song" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_mixer_fails_naming_the_mixer(
    songs: list[RealSong],
    matcher: ThreadServer[MatcherServicer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from devkit.localstack import free_port

    address = f"127.0.0.1:{free_port()}"
    argv = playlist_argv(songs, matcher, tmp_path / "set.wav", "--mixer", address)
    code, out, err = run(capsys, *argv)
    assert code == 1 and out is None
    assert f"mixer at {address}" in err and "unavailable" in err
    assert list(tmp_path.iterdir()) == []
