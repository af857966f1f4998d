"""The Studio's clip cache: real excerpts of real songs, cut and encoded once by real ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segue.audio import decode
from segue.loudness import integrated_lufs
from segue.studio import clips
from segue.studio.clips import TARGET_LUFS, ClipCache, ClipError
from segue.studio.model import Clip

RATE = 48000


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's view of a file: its format (duration, tags) and its one audio stream."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=duration:format_tags:stream=codec_name,sample_rate,channels:stream_tags",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    info: dict[str, Any] = json.loads(out)
    return info


class CountingFfmpeg:
    """Wraps the module's ffmpeg runner (the real one still runs) and counts clip cuts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cuts = 0
        self._lock = threading.Lock()
        real = clips._run_ffmpeg

        def counted(args: list[str], stdin: bytes | None, what: str) -> bytes:
            if what.startswith("cut"):
                with self._lock:
                    self.cuts += 1
            return real(args, stdin, what)

        monkeypatch.setattr(clips, "_run_ffmpeg", counted)


def test_a_clip_is_the_asked_excerpt_as_48k_opus(music_tracks: list[Path],
                                                  tmp_path: Path) -> None:
    path = ClipCache(tmp_path).path(Clip("song", 7.25, 12.0), music_tracks[0])
    info = probe(path)
    assert path.parent == tmp_path and path.suffix == ".opus"
    assert float(info["format"]["duration"]) == pytest.approx(12.0, abs=0.05)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("opus", "48000", 2)


def test_the_clip_holds_the_music_of_its_excerpt(music_tracks: list[Path],
                                                 tmp_path: Path) -> None:
    start_s, duration_s = 10.0, 6.0
    clip = decode(ClipCache(tmp_path).path(Clip("s", start_s, duration_s), music_tracks[3]), RATE)
    source = decode(music_tracks[3], RATE)
    excerpt = source[int(start_s * RATE):int((start_s + duration_s) * RATE)]
    later = source[int((start_s + 1) * RATE):int((start_s + 1 + duration_s) * RATE)]
    n = min(clip.size, excerpt.size)

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[:n], b[:n])[0, 1])

    # Gain and fades change the level, not the waveform: it is the excerpt, sample-aligned.
    assert correlation(clip, excerpt) > 0.95
    assert correlation(clip, later) < 0.5


def test_clips_of_different_songs_come_out_equally_loud(music_tracks: list[Path],
                                                        tmp_path: Path) -> None:
    cache = ClipCache(tmp_path)
    sources, outputs = [], []
    for track in music_tracks[::7]:
        stereo = decode(track, RATE, 2)[5 * RATE:15 * RATE]
        sources.append(integrated_lufs(stereo.T, RATE))
        clip = decode(cache.path(Clip("s", 5.0, 10.0), track), RATE, 2)
        outputs.append(integrated_lufs(clip.T, RATE))
        assert np.abs(clip).max() < 1.0  # the gain never clips a peak
    assert max(sources) - min(sources) > 1.5  # the songs themselves differ
    assert outputs == pytest.approx([TARGET_LUFS] * len(outputs), abs=0.5)


def test_clips_fade_in_and_out_without_a_click(music_tracks: list[Path], tmp_path: Path) -> None:
    clip = decode(ClipCache(tmp_path).path(Clip("s", 12.0, 4.0), music_tracks[5]), RATE)
    edge = int(0.002 * RATE)

    def rms(part: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.square(part))))

    assert rms(clip[:edge]) < 0.1 * rms(clip)
    assert rms(clip[-edge:]) < 0.1 * rms(clip)


def test_a_clip_carries_no_tag_of_its_source(music_tracks: list[Path], tmp_path: Path) -> None:
    tagged = tmp_path / "tagged.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(music_tracks[0]), "-c", "copy",
                    "-metadata", "title=Secret Title", "-metadata", "artist=Secret Artist",
                    str(tagged)], check=True)  # fmt: skip
    assert "Secret Title" in json.dumps(probe(tagged))
    clip = ClipCache(tmp_path / "cache").path(Clip("s", 3.0, 5.0), tagged)
    assert "Secret" not in json.dumps(probe(clip))


def test_a_cached_clip_is_served_without_running_ffmpeg_again(
        music_tracks: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ffmpeg = CountingFfmpeg(monkeypatch)
    cache = ClipCache(tmp_path)
    first = cache.path(Clip("s", 4.0, 5.0), music_tracks[1])
    written = first.stat().st_mtime_ns
    again = ClipCache(tmp_path).path(Clip("s", 4.0, 5.0), music_tracks[1])  # a restarted app
    assert again == first and again.stat().st_mtime_ns == written
    assert ffmpeg.cuts == 1


def test_another_excerpt_or_setting_is_another_file(music_tracks: list[Path],
                                                    tmp_path: Path) -> None:
    cache = ClipCache(tmp_path)
    base = cache.path(Clip("s", 4.0, 5.0), music_tracks[1])
    others = {
        cache.path(Clip("s", 4.5, 5.0), music_tracks[1]),
        cache.path(Clip("s", 4.0, 6.0), music_tracks[1]),
        cache.path(Clip("s", 4.0, 5.0), music_tracks[2]),
        ClipCache(tmp_path, bitrate_kbps=64).path(Clip("s", 4.0, 5.0), music_tracks[1]),
    }
    assert base not in others and len(others) == 4


def test_a_changed_source_is_cut_again(music_tracks: list[Path], tmp_path: Path) -> None:
    source = tmp_path / "song.opus"
    shutil.copy(music_tracks[0], source)
    cache = ClipCache(tmp_path / "cache")
    before = cache.path(Clip("s", 2.0, 3.0), source)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    after = cache.path(Clip("s", 2.0, 3.0), source)
    assert after != before and after.is_file()


def test_threads_asking_for_one_clip_share_one_ffmpeg_run(
        music_tracks: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ffmpeg = CountingFfmpeg(monkeypatch)
    cache = ClipCache(tmp_path)
    start = threading.Barrier(6)
    paths: list[Path] = []

    def ask() -> None:
        start.wait()
        paths.append(cache.path(Clip("s", 6.0, 8.0), music_tracks[2]))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 6 and len(set(paths)) == 1
    assert ffmpeg.cuts == 1
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no temporary files left
    assert float(probe(paths[0])["format"]["duration"]) == pytest.approx(8.0, abs=0.05)


def test_a_request_does_not_wait_behind_a_background_cut_of_the_same_clip(
        music_tracks: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A background cut may run niced and be starved by the requests; none may wait for it.
    real = clips._run_ffmpeg
    background_started, release = threading.Event(), threading.Event()

    def stalled_in_background(args: list[str], stdin: bytes | None, what: str) -> bytes:
        if threading.current_thread().name == "background":
            background_started.set()
            release.wait(timeout=30)
        return real(args, stdin, what)

    monkeypatch.setattr(clips, "_run_ffmpeg", stalled_in_background)
    cache = ClipCache(tmp_path)
    clip = Clip("s", 5.0, 4.0)
    background = threading.Thread(target=cache.prepare, args=(clip, music_tracks[0]),
                                  name="background")
    background.start()
    assert background_started.wait(timeout=10)
    served = cache.path(clip, music_tracks[0])  # would block until release with a shared lock
    assert background.is_alive() and served.is_file()
    release.set()
    background.join(timeout=30)
    assert cache.prepare(clip, music_tracks[0]) == served
    assert float(probe(served)["format"]["duration"]) == pytest.approx(4.0, abs=0.05)


def test_a_missing_source_raises_clip_error(tmp_path: Path) -> None:
    with pytest.raises(ClipError, match="cannot read the source"):
        ClipCache(tmp_path).path(Clip("s", 0.0, 5.0), tmp_path / "gone.opus")
    assert list(tmp_path.iterdir()) == []


def test_an_undecodable_source_raises_clip_error_with_ffmpegs_words(tmp_path: Path) -> None:
    source = tmp_path / "noise.opus"
    source.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(ClipError, match="Invalid data found"):
        ClipCache(tmp_path / "cache").path(Clip("s", 0.0, 5.0), source)
    assert not any((tmp_path / "cache").glob("*"))


def test_a_clip_past_the_songs_end_raises_clip_error(music_tracks: list[Path],
                                                     tmp_path: Path) -> None:
    with pytest.raises(ClipError, match="ends"):
        ClipCache(tmp_path).path(Clip("s", 25.0, 12.0), music_tracks[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("clip", [Clip("s", -1.0, 5.0), Clip("s", 0.0, 0.0),
                                  Clip("s", float("nan"), 5.0), Clip("s", 0.0, float("inf"))])
def test_an_impossible_excerpt_is_a_value_error(clip: Clip, music_tracks: list[Path],
                                                tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clip"):
        ClipCache(tmp_path).path(clip, music_tracks[0])


def test_a_cut_into_ogg_vorbis_is_the_full_length_wherever_it_starts(tmp_path: Path) -> None:
    # Found on real game music: a seek into Ogg/Vorbis lands up to a packet late, so cuts
    # came out 2-23 ms short and the clip was refused.
    source = tmp_path / "noise.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "anoisesrc=d=40:c=pink:r=44100:a=0.3:seed=7", "-af",
                    "volume=enable='lt(mod(t,0.5),0.05)':volume=4",  # beats: short blocks
                    "-ac", "2", "-c:a", "libvorbis", "-b:a", "128k", str(source)],
                   check=True)  # fmt: skip
    for start in (13.0, 14.0, 15.0, 16.0):  # each ended 1-10 ms short before
        assert clips.cut(source, start, 3.0).shape == (3 * RATE, 2), start
    end = clips.cut(source, 38.5, 3.0).shape[0] / RATE  # past the source's end: what is there
    assert end == pytest.approx(1.5, abs=0.03)
