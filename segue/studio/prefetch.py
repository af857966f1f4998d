"""Clips cut ahead of the pages that play them, so that a page's clips come from the cache.

An annotator listens to every clip of a page before the next one opens (at least three clip
lengths), which is ample time to cut the next page's clips in the background. One worker
runs at a time by default (each cut is an ffmpeg process), so that pages and answers keep the
rest of the machine; clips asked for before their turn are cut on demand as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from segue.studio.model import Clip

log = logging.getLogger(__name__)

MAX_PENDING = 256  # clips waiting to be cut; past it, prefetching is skipped (cut on demand)


class ClipPrefetcher:
    """Cuts clips with `cut` on a bounded background pool; each clip at most once at a time."""

    def __init__(self, cut: Callable[[Clip], Path], workers: int = 1,
                 max_pending: int = MAX_PENDING) -> None:
        self._cut = cut
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip-prefetch")
        self._pending: set[Clip] = set()
        self._lock = threading.Lock()
        self._max_pending = max_pending

    def ahead(self, clips: Iterable[Clip]) -> int:
        """Queues `clips` not already queued; returns how many were queued."""
        queued = 0
        for clip in clips:
            with self._lock:
                if clip in self._pending or len(self._pending) >= self._max_pending:
                    continue
                self._pending.add(clip)
            try:
                self._pool.submit(self._run, clip)
            except RuntimeError:  # shut down
                self._done(clip)
                return queued
            queued += 1
        return queued

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, clip: Clip) -> None:
        try:
            self._cut(clip)
        except Exception as e:  # the page's own request will cut it and report the error
            log.warning("prefetching clip %s at %.1f s failed: %s", clip.song_id, clip.start_s, e)
        finally:
            self._done(clip)

    def _done(self, clip: Clip) -> None:
        with self._lock:
            self._pending.discard(clip)


__all__ = ["MAX_PENDING", "ClipPrefetcher"]
