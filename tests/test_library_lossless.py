"""Lossless files (WAV, AIFF, FLAC) are decoded in-process by FFmpeg's libraries: the engine
sees the very samples the ffmpeg pipe gives, and bad files are named as through the pipe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ThreadServer

from segue.audio import PcmReader
from segue.library import Done, Failed, Source, analyze_remote
from segue.library import outcome as why
from segue.library.av_reader import AvReader
from segue.library.decoding import DECODE_RATE_HZ, open_reader
from segue.library.engine import LocalEngine

FORMATS = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"], "aiff": ["-c:a", "pcm_s16be"]}


def _as(song: Path, target: Path, codec: list[str], seconds: float = 20.0) -> Path:
    """The song's first `seconds` as 44.1 kHz stereo in `target`'s format, made by ffmpeg."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(song), "-t", str(seconds),
                    "-ar", "44100", "-ac", "2", *codec, str(target)], check=True)  # fmt: skip
    return target


def _all(reader: PcmReader | AvReader) -> np.ndarray:
    with reader:
        return np.concatenate(list(reader.chunks(50_000)))


@pytest.fixture(scope="module")
def engine(stream_model_path: Path) -> LocalEngine:
    return LocalEngine(stream_model_path)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_a_lossless_file_is_read_in_process_with_the_pipes_very_samples(
    suffix: str, music_tracks: list[Path], tmp_path: Path
) -> None:
    path = _as(music_tracks[0], tmp_path / f"song.{suffix}", FORMATS[suffix])
    reader = open_reader(path, check_length=True)
    assert isinstance(reader, AvReader)
    in_process = _all(reader)
    piped = _all(PcmReader(path, DECODE_RATE_HZ, check_length=True))
    np.testing.assert_array_equal(in_process, piped)


def test_chunks_have_the_asked_length_but_the_last(music_tracks: list[Path],
                                                  tmp_path: Path) -> None:
    path = _as(music_tracks[0], tmp_path / "song.flac", FORMATS["flac"], seconds=3.0)
    with AvReader(path, DECODE_RATE_HZ) as reader:
        sizes = [c.size for c in reader.chunks(10_000)]
    assert sizes[:-1] == [10_000] * (len(sizes) - 1) and 0 < sizes[-1] <= 10_000
    assert sum(sizes) == pytest.approx(3 * DECODE_RATE_HZ, abs=2)


def test_the_engine_gives_a_wav_and_its_flac_copy_the_same_analysis(
    engine: LocalEngine, music_tracks: list[Path], tmp_path: Path
) -> None:
    wav = _as(music_tracks[1], tmp_path / "song.wav", FORMATS["wav"])
    flac = _as(wav, tmp_path / "song.flac", FORMATS["flac"])  # 16-bit in, 16-bit out: lossless
    results = [engine.analyze(Source(p, p.name, "song")) for p in (flac, wav)]
    assert all(isinstance(r, Done) for r in results)
    first, second = (r.analysis for r in results if isinstance(r, Done))
    assert list(first.feel) == list(second.feel)  # lossless: the same samples, the same song


@pytest.mark.parametrize("suffix", ["flac", "wav", "aiff"])
def test_a_file_cut_short_of_its_header_is_truncated(suffix: str, engine: LocalEngine,
                                                     music_tracks: list[Path],
                                                     tmp_path: Path) -> None:
    # FLAC's and AIFF's headers hold the frame count; a WAV's, its data size (FFmpeg's own
    # figure for a cut WAV is estimated from the file's size, so it would not tell).
    whole = _as(music_tracks[0], tmp_path / f"whole.{suffix}", FORMATS[suffix])
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    failed = engine.analyze(Source(cut, cut.name, "cut"))
    assert isinstance(failed, Failed)
    assert failed.reason == why.TRUNCATED and "declares 20.0 s" in failed.detail


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_text_named_as_a_lossless_file_is_undecodable(suffix: str, engine: LocalEngine,
                                                      tmp_path: Path) -> None:
    bad = tmp_path / f"notes.{suffix}"
    bad.write_text("these are not the droids\n" * 50)
    failed = engine.analyze(Source(bad, bad.name, "notes"))
    assert isinstance(failed, Failed)
    assert failed.reason == why.UNDECODABLE and bad.name in failed.detail


def test_the_service_path_streams_a_flac_read_in_process(
    engine: LocalEngine, embedder_server: ThreadServer, music_tracks: list[Path], tmp_path: Path
) -> None:
    flac = _as(music_tracks[2], tmp_path / "song.flac", FORMATS["flac"])
    source = Source(flac, flac.name, "song")
    (remote,) = list(analyze_remote([source], [embedder_server.address]))
    local = engine.analyze(source)
    assert isinstance(remote, Done) and isinstance(local, Done)
    assert list(remote.analysis.feel) == pytest.approx(list(local.analysis.feel), abs=1e-5)
