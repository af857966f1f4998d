"""Clips cut ahead of the pages that play them, so that a page's clips come from the cache.

Two kinds of work, each on its own background threads (each cut is an ffmpeg process):

1. the clips of the pages about to be served (`ahead`), at the server's CPU priority: an
   annotator listens to every clip of a page before the next one opens, ample time to cut the
   next page's clips, but not if they queue behind other work on a busy machine;
2. the library's whole clip grid (`warm`), started once at start-up and bounded, so that
   after a while every page's clips are in the cache before anyone asks for them. It runs at
   a lower CPU priority, so that it never slows a request or a page's own clips.

Clips asked for before their turn are cut on demand by the request, as without prefetching.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segue.studio.model import Clip

log = logging.getLogger(__name__)

MAX_PENDING = 256  # page clips waiting to be cut; past it, prefetching is skipped
# Added to the workers' nice value; their ffmpeg processes inherit it (Linux: per thread).
NICENESS = 10


@dataclass(frozen=True)
class WarmProgress:
    """How far the library's warm-up is: clips handled (cut, found cached or failed) of
    `total`, and how many of them failed."""

    done: int
    total: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


class ClipPrefetcher:
    """Cuts clips with `cut`: page clips on `workers` background threads, the warm-up on one
    more, niced thread.

    Each page clip is queued at most once at a time. `close` stops the workers after their
    current cut; queued work is dropped.
    """

    def __init__(self, cut: Callable[[Clip], Path], workers: int = 1,
                 max_pending: int = MAX_PENDING) -> None:
        self._cut = cut
        self._max_pending = max_pending
        self._pages: deque[Clip] = deque()
        self._pending: set[Clip] = set()
        self._warm: deque[Clip] = deque()
        self._progress = WarmProgress(0, 0, 0)
        self._closed = False
        self._wake = threading.Condition()
        self._threads = [threading.Thread(target=self._work, args=(True,),
                                          name=f"clip-prefetch-{i}", daemon=True)
                         for i in range(workers)]
        self._threads.append(threading.Thread(target=self._work, args=(False,),
                                              name="clip-warm-up", daemon=True))
        for thread in self._threads:
            thread.start()

    def ahead(self, clips: Iterable[Clip]) -> int:
        """Queues `clips` not already queued, before any warm-up; returns how many."""
        queued = 0
        with self._wake:
            for clip in clips:
                if self._closed or clip in self._pending or len(self._pending) >= (
                        self._max_pending):
                    continue
                self._pending.add(clip)
                self._pages.append(clip)
                queued += 1
            self._wake.notify_all()
        return queued

    def warm(self, clips: Sequence[Clip]) -> None:
        """Queues `clips` behind every page clip, replacing any earlier warm-up."""
        with self._wake:
            self._warm.clear()
            self._warm.extend(clips)
            self._progress = WarmProgress(0, len(clips), 0)
            self._wake.notify_all()

    def progress(self) -> WarmProgress:
        with self._wake:
            return self._progress

    def pending(self) -> int:
        """Page clips queued or being cut."""
        with self._wake:
            return len(self._pending)

    def close(self, wait_s: float = 0.0) -> None:
        """Drops queued work and stops the workers, waiting up to `wait_s` seconds for a
        cut under way to finish."""
        with self._wake:
            self._closed = True
            self._pages.clear()
            self._warm.clear()
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=wait_s)

    def _work(self, pages: bool) -> None:
        if not pages:
            _lower_priority()
        while (clip := self._next(pages)) is not None:
            ok = self._run(clip)
            with self._wake:
                if pages:
                    self._pending.discard(clip)
                else:
                    p = self._progress
                    self._progress = WarmProgress(p.done + 1, p.total, p.failed + (not ok))

    def _next(self, pages: bool) -> Clip | None:
        """The next page clip (or warm-up clip); None once closed."""
        queue = self._pages if pages else self._warm
        with self._wake:
            while not self._closed and not queue:
                self._wake.wait()
            return None if self._closed else queue.popleft()

    def _run(self, clip: Clip) -> bool:
        try:
            self._cut(clip)
        except Exception as e:  # a page's own request cuts it again and reports the error
            log.warning("cutting clip %s at %.1f s ahead failed: %s", clip.song_id,
                        clip.start_s, e)
            return False
        return True


def _lower_priority() -> None:
    """Raises this thread's nice value by NICENESS where the system allows it, so that the
    server's own requests and page clips go first when the cores are busy."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + NICENESS)
    except (AttributeError, OSError) as e:  # not Linux, or not permitted: same priority
        log.debug("clip prefetching keeps the server's priority: %s", e)


__all__ = ["MAX_PENDING", "ClipPrefetcher", "WarmProgress"]
