"""Clips are cut ahead of the pages that play them (segue.studio.prefetch)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from segue.studio.model import Clip
from segue.studio.prefetch import ClipPrefetcher

CLIPS = [Clip(f"song-{i}", 1.0, 2.0) for i in range(5)]


def test_every_clip_queued_is_cut_once_in_the_background(tmp_path: Path) -> None:
    cut: list[Clip] = []
    release = threading.Event()

    def slow_cut(clip: Clip) -> Path:
        release.wait(5)
        cut.append(clip)
        return tmp_path / clip.song_id

    prefetcher = ClipPrefetcher(slow_cut)
    assert prefetcher.ahead(CLIPS) == 5
    assert prefetcher.ahead(CLIPS) == 0  # queued already: not twice
    assert prefetcher.pending() == 5
    release.set()
    deadline = time.monotonic() + 5
    while prefetcher.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(cut, key=lambda c: c.song_id) == CLIPS
    prefetcher.close()


def test_a_full_queue_skips_prefetching_and_a_failed_cut_is_let_go(tmp_path: Path) -> None:
    release = threading.Event()

    def failing_cut(clip: Clip) -> Path:
        release.wait(5)
        raise OSError("source missing")

    prefetcher = ClipPrefetcher(failing_cut, max_pending=2)
    assert prefetcher.ahead(CLIPS) == 2  # the rest are cut on demand when asked for
    release.set()
    deadline = time.monotonic() + 5
    while prefetcher.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prefetcher.pending() == 0
    assert prefetcher.ahead(CLIPS[2:3]) == 1  # failures leave nothing stuck
    prefetcher.close()
