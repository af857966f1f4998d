"""Admission control for CPU-heavy calls (PlanPlaylist, Cluster).

Heavy calls run on their own small thread pool, so cheap calls (GetSong, NextSegment,
SimilarSongs, UpsertSong, DeleteSong), which run on the event loop's default executor, never
wait behind them. At most `workers` heavy calls run and `queue` more wait; a heavy call
beyond that is refused at once with OverloadedError (RESOURCE_EXHAUSTED) instead of waiting
without bound. A call abandoned while it waits (the client cancelled, or its deadline passed)
is dropped from the queue and never runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from services.matcher.errors import OverloadedError

T = TypeVar("T")
# Names of the heavy pool's threads start with this.
HEAVY_THREAD_PREFIX = "matcher-heavy"


class HeavyCalls:
    """A bounded executor with a bounded queue."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("heavy calls need at least one worker and a queue of 0 or more")
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=HEAVY_THREAD_PREFIX)
        self._admitted = 0  # running or waiting
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Heavy calls running or waiting now."""
        with self._lock:
            return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise OverloadedError(
                    f"too many expensive calls: {self.workers} running and {self.queue} "
                    "waiting; retry later"
                )
            self._admitted += 1

    def _release(self, _: object) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """Runs `fn` on the heavy pool (in the caller's context variables), or raises
        OverloadedError at once when the pool and its queue are full."""
        self._admit()
        context = contextvars.copy_context()
        try:
            future: Future[T] = self._executor.submit(context.run, fn)
        except BaseException:
            self._release(None)
            raise
        # Runs when the call finishes, fails, or is cancelled before it started.
        future.add_done_callback(self._release)
        # Cancelling the awaiting task cancels a call still waiting in the queue.
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Drops waiting calls and lets running ones finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)
