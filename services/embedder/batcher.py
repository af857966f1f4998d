"""Sequence batcher: model runs of many concurrent streams merged into one ONNX Runtime call.

Like Triton's sequence batcher, each request carries its stream's recurrent state and k whole
windows; requests with equal k are stacked into one [B, k * window] batch. A batch starts as
soon as it holds `max_size` windows, or every stream that could contribute has, or the oldest
request has waited `max_delay_s`. ONNX Runtime runs in worker threads, never on the event loop;
while a run is in progress the next batch fills up, so batching grows with load by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from segue.log import get_logger
from segue.metrics import EMBEDDER_BATCH_SIZE, EMBEDDER_QUEUE_DELAY
from services.embedder.model import ModelOutputs, StreamModel

FloatArray = npt.NDArray[np.float32]

log = get_logger("segue.embedder.batcher")


class BatcherClosedError(RuntimeError):
    """The batcher was stopped; no more model runs are accepted."""


@dataclass
class _Request:
    pcm: FloatArray  # [k * window_samples]
    state: FloatArray  # [state_dim]
    windows: int
    future: asyncio.Future[ModelOutputs]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Batches `run` calls from many coroutines into few model runs."""

    def __init__(
        self,
        model: StreamModel,
        *,
        max_size: int = 64,
        max_delay_s: float = 0.002,
        workers: int = 1,
        expected: Callable[[], int] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.model = model
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        # How many requests could arrive for the next batch (e.g. streams with audio queued).
        self._expected = expected or (lambda: 1)
        self._pending: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ort")
        self._slots = asyncio.Semaphore(workers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def run(self, pcm: FloatArray, state: FloatArray) -> ModelOutputs:
        """Runs the model on one stream's k windows; returns a batch-of-one result."""
        if self._closed:
            raise BatcherClosedError("the embedder is shutting down")
        window = self.model.spec.window_samples
        if pcm.ndim != 1 or pcm.size == 0 or pcm.size % window:
            raise ValueError(f"pcm must hold whole windows of {window} samples, got {pcm.shape}")
        self.start()
        future: asyncio.Future[ModelOutputs] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(pcm, state, pcm.size // window, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Fails queued requests, waits for running batches, and stops the worker threads."""
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(BatcherClosedError("the embedder is shutting down"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def _windows_pending(self) -> int:
        return sum(r.windows for r in self._pending)

    async def _loop(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await self._slots.acquire()
            try:
                await self._fill()
            except BaseException:
                self._slots.release()
                raise
            batch = self._take()
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fill(self) -> None:
        """Waits (bounded by max_delay_s) for more requests to join the next batch."""
        deadline = self._pending[0].enqueued + self.max_delay_s
        while True:
            target = min(self.max_size, max(1, self._expected()))
            now = time.perf_counter()
            if self._windows_pending() >= target or now >= deadline:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - now)
            except TimeoutError:
                return

    def _take(self) -> list[_Request]:
        """The oldest request plus following ones with the same k, up to max_size windows."""
        first = self._pending[0]
        batch: list[_Request] = []
        total = 0
        keep: deque[_Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if request.future.done():  # caller went away
                continue
            fits = total + request.windows <= self.max_size or not batch
            if request.windows == first.windows and fits:
                batch.append(request)
                total += request.windows
            else:
                keep.append(request)
        self._pending = keep
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        try:
            if not batch:
                return
            started = time.perf_counter()
            for request in batch:
                EMBEDDER_QUEUE_DELAY.observe(started - request.enqueued)
            EMBEDDER_BATCH_SIZE.observe(sum(r.windows for r in batch))
            pcm = np.stack([r.pcm for r in batch])
            state = np.stack([r.state for r in batch])
            loop = asyncio.get_running_loop()
            try:
                out = await loop.run_in_executor(self._executor, self.model.run, pcm, state)
            except Exception as e:
                log.exception("model run failed", batch=len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)
                return
            for i, request in enumerate(batch):
                if not request.future.done():
                    request.future.set_result(out.row(i))
        finally:
            self._slots.release()


__all__ = ["Batcher", "BatcherClosedError"]
