"""The library engine's three ways through a folder give the same analyses: one process,
a pool of worker processes, and embedder replicas; and memory does not grow with a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ThreadServer, make_embedder_server

from segue.audio import decode
from segue.embedding.local import analyze_mono
from segue.embedding.model import StreamModel
from segue.library import Done, Source, analyze_local, analyze_remote, find_sources
from segue.library.decoding import DECODE_RATE_HZ
from segue.library.engine import LocalEngine
from segue.library.remote import DEFAULT_CHUNK_S

REPO = Path(__file__).resolve().parent.parent


def _sources(tracks: list[Path]) -> list[Source]:
    return find_sources(tracks)


def _by_key(outcomes: list[object]) -> dict[str, Done]:
    done = [o for o in outcomes if isinstance(o, Done)]
    assert len(done) == len(outcomes), f"failures: {outcomes}"
    return {d.source.key: d for d in done}


def test_streamed_decoding_gives_the_analysis_of_the_whole_song_at_once(
    stream_model_path: Path, stream_model: StreamModel, music_tracks: list[Path]
) -> None:
    source = _sources(music_tracks[:1])[0]
    streamed = LocalEngine(stream_model_path).analyze(source)
    assert isinstance(streamed, Done)
    whole = analyze_mono(stream_model, decode(source.path, DECODE_RATE_HZ), DECODE_RATE_HZ,
                         source.song_id)  # fmt: skip
    analysis = streamed.analysis
    assert analysis.feel == pytest.approx(whole.feel, abs=1e-5)
    assert analysis.duration_s == pytest.approx(whole.duration_s)
    assert len(analysis.segments) == len(whole.segments)
    assert analysis.tempo.bpm == pytest.approx(whole.tempo.bpm, abs=0.01)


def test_a_pool_of_two_workers_gives_the_same_analyses_as_one_process(
    stream_model_path: Path, music_tracks: list[Path]
) -> None:
    sources = _sources(music_tracks[:3])
    one = _by_key(list(analyze_local(sources, jobs=1, model_path=stream_model_path)))
    pool = _by_key(list(analyze_local(sources, jobs=2, model_path=stream_model_path)))
    assert set(pool) == set(one) == {s.key for s in sources}
    for key, done in one.items():
        assert pool[key].analysis.feel == pytest.approx(done.analysis.feel, abs=1e-6)
        assert pool[key].audio_s == pytest.approx(done.audio_s)


def test_the_service_path_keeps_every_replica_busy_with_several_streams(
    stream_model_path: Path, music_tracks: list[Path]
) -> None:
    replicas: list[ThreadServer] = [make_embedder_server(stream_model_path) for _ in range(2)]
    peak = [0, 0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            for i, server in enumerate(replicas):
                assert server.servicer is not None
                peak[i] = max(peak[i], server.servicer.active_streams)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sources = _sources(music_tracks[:8])
    try:
        remote = _by_key(list(analyze_remote(sources, [r.address for r in replicas],
                                             streams_per_replica=3)))  # fmt: skip
    finally:
        stop.set()
        watcher.join()
        accepted = [r.servicer.streams_accepted for r in replicas if r.servicer is not None]
        for server in replicas:
            server.stop()
    assert set(remote) == {s.key for s in sources}
    # Each file goes to the replica with the fewest streams open, so both take a share.
    assert sum(accepted) == len(sources) and min(accepted) >= 2, accepted
    assert min(peak) >= 2, f"streams in flight per replica peaked at {peak}"
    local = _by_key(list(analyze_local(sources[:1], jobs=1, model_path=stream_model_path)))
    key = sources[0].key
    assert remote[key].analysis.feel == pytest.approx(local[key].analysis.feel, abs=1e-5)


def _peak_rss_mb(path: Path, tmp_path: Path) -> float:
    """Peak RSS of `segue analyze --local` on one file, in its own process (MB)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "segue.cli", "analyze", "--local", "-j", "1", str(path),
         "-o", str(tmp_path / f"{path.stem}.json")],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_a_long_file_does_not_grow_the_memory_of_its_analysis(tmp_path: Path) -> None:
    def tone(minutes: int) -> Path:
        out = tmp_path / f"{minutes}min.ogg"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=f=220:beep_factor=4:d={minutes * 60}", "-c:a", "libvorbis",
                        "-q:a", "0", str(out)], check=True)  # fmt: skip
        return out

    short, long = _peak_rss_mb(tone(1), tmp_path), _peak_rss_mb(tone(45), tmp_path)
    # 45 min held whole would add 238 MB of float32 PCM (and as much again in copies).
    assert long - short < 40, f"peak RSS {short:.0f} MB for 1 min, {long:.0f} MB for 45 min"
    analysis = json.loads((tmp_path / "45min.json").read_text())
    # Past STRUCTURE_MAX_S the vectors and segments are kept, the structure left out.
    assert analysis["duration_s"] == pytest.approx(2700, abs=0.1)
    assert len(analysis["segments"]) > 300 and not analysis["sections"]


def test_the_service_path_keeps_its_messages_within_each_replicas_chunk_limit(
    stream_model_path: Path, music_tracks: list[Path]
) -> None:
    # 64 KiB is 0.74 s of 22050 Hz float32: well under the 4 s the library path asks for.
    small = make_embedder_server(stream_model_path, max_chunk_bytes=64 * 1024)
    sources = _sources(music_tracks[:2])
    try:
        remote = _by_key(list(analyze_remote(sources, [small.address], chunk_s=DEFAULT_CHUNK_S)))
    finally:
        small.stop()
    local = _by_key(list(analyze_local(sources, jobs=1, model_path=stream_model_path)))
    for key, done in local.items():
        assert remote[key].analysis.feel == pytest.approx(done.analysis.feel, abs=1e-5)


def test_a_single_file_is_analysed_in_this_process_whatever_the_jobs(
    stream_model_path: Path, music_tracks: list[Path]
) -> None:
    import psutil  # type: ignore[import-untyped, unused-ignore]

    def pythons() -> set[int]:
        return {p.pid for p in psutil.Process().children() if "python" in p.name().lower()}

    before = pythons()  # e.g. multiprocessing's resource tracker, left by earlier tests
    outcomes = analyze_local(_sources(music_tracks[:1]), jobs=4, model_path=stream_model_path)
    first = next(outcomes)
    # A pool would still hold its worker processes here, before the iterator is exhausted.
    assert isinstance(first, Done) and pythons() - before == set()
    assert list(outcomes) == []
