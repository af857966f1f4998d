"""Clips are cut ahead of the pages that play them (segue.studio.prefetch)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segue.studio.model import Clip
from segue.studio.prefetch import NICENESS, ClipPrefetcher, WarmProgress

CLIPS = [Clip(f"song-{i}", 1.0, 2.0) for i in range(5)]


class GatedCut:
    """A cut that waits for `gate` (only for the songs in `gated`, when given), then records
    its clip in order, or raises for the songs in `failing`."""

    def __init__(self, failing: set[str] | None = None, gated: set[str] | None = None) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()  # a cut is waiting at the gate
        self.done: list[Clip] = []
        self.failing = failing or set()
        self.gated = gated

    def __call__(self, clip: Clip) -> Path:
        if self.gated is None or clip.song_id in self.gated:
            self.started.set()
            self.gate.wait(5)
        if clip.song_id in self.failing:
            raise OSError("source missing")
        self.done.append(clip)
        return Path(clip.song_id)


def wait_until(done: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_clip_queued_is_cut_once_in_the_background() -> None:
    cut = GatedCut()
    prefetcher = ClipPrefetcher(cut)
    assert prefetcher.ahead(CLIPS) == 5
    assert prefetcher.ahead(CLIPS) == 0  # queued already: not twice
    assert prefetcher.pending() == 5
    cut.gate.set()
    wait_until(lambda: prefetcher.pending() == 0)
    assert sorted(cut.done, key=lambda c: c.song_id) == CLIPS
    prefetcher.close()


def test_a_full_queue_skips_prefetching_and_a_failed_cut_is_let_go() -> None:
    cut = GatedCut(failing={c.song_id for c in CLIPS})
    prefetcher = ClipPrefetcher(cut, max_pending=2)
    assert prefetcher.ahead(CLIPS) == 2  # the rest are cut on demand when asked for
    cut.gate.set()
    wait_until(lambda: prefetcher.pending() == 0)
    assert prefetcher.pending() == 0
    assert prefetcher.ahead(CLIPS[2:3]) == 1  # failures leave nothing stuck
    prefetcher.close()


def test_page_clips_do_not_wait_behind_the_library_warm_up() -> None:
    cut = GatedCut(gated={f"warm-{i}" for i in range(4)})
    warm = [Clip(f"warm-{i}", 0.0, 2.0) for i in range(4)]
    prefetcher = ClipPrefetcher(cut)
    prefetcher.warm(warm)
    assert cut.started.wait(5)  # the warm-up holds warm-0 at the gate
    prefetcher.ahead(CLIPS[:2])
    wait_until(lambda: prefetcher.pending() == 0)
    assert cut.done == CLIPS[:2]  # cut while the warm-up was still stuck
    cut.gate.set()
    wait_until(lambda: prefetcher.progress().finished)
    assert cut.done == [*CLIPS[:2], *warm]
    assert prefetcher.progress() == WarmProgress(done=4, total=4, failed=0)
    prefetcher.close()


def test_warm_up_progress_counts_failed_clips_and_carries_on() -> None:
    cut = GatedCut(failing={"song-1"})
    cut.gate.set()
    prefetcher = ClipPrefetcher(cut)
    assert prefetcher.progress().finished  # nothing to warm: finished at once
    prefetcher.warm(CLIPS)
    wait_until(lambda: prefetcher.progress().finished)
    assert prefetcher.progress() == WarmProgress(done=5, total=5, failed=1)
    prefetcher.close()


def test_close_drops_the_queued_warm_up() -> None:
    cut = GatedCut()
    prefetcher = ClipPrefetcher(cut)
    prefetcher.warm(CLIPS)
    assert cut.started.wait(5)
    prefetcher.close()
    cut.gate.set()
    prefetcher.close(wait_s=5)  # the worker has exited
    assert cut.done == CLIPS[:1]  # the cut under way finished; nothing else started
    assert prefetcher.ahead(CLIPS) == 0


def _nice_of_children(tmp_path: Path, seen: list[int]) -> Callable[[Clip], Path]:
    def cut(clip: Clip) -> Path:  # a child process inherits the cutting thread's priority
        out = subprocess.run(["sh", "-c", "cut -d' ' -f19 /proc/self/stat"],
                             capture_output=True, text=True, check=True)
        seen.append(int(out.stdout))
        return tmp_path / clip.song_id
    return cut


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux: per-thread priority")
def test_page_clips_are_cut_at_the_servers_priority_and_the_warm_up_lower(
    tmp_path: Path,
) -> None:
    server = os.getpriority(os.PRIO_PROCESS, 0)
    pages: list[int] = []
    prefetcher = ClipPrefetcher(_nice_of_children(tmp_path, pages))
    prefetcher.ahead(CLIPS[:1])
    wait_until(lambda: prefetcher.pending() == 0)
    prefetcher.close()
    assert pages == [server]

    warm: list[int] = []
    prefetcher = ClipPrefetcher(_nice_of_children(tmp_path, warm))
    prefetcher.warm(CLIPS[:1])
    wait_until(lambda: prefetcher.progress().finished)
    prefetcher.close()
    assert warm == [min(19, server + NICENESS)]
