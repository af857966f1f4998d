"""Sequence batcher: model runs of many concurrent streams merged into one ONNX Runtime call.

Like Triton's sequence batcher, each request carries its stream's recurrent state and k whole
windows; requests with equal k are stacked into one [B, k * window] batch. A stream hands the
batcher a whole sequence of steps at once (e.g. the windows one chunk completed); each step
needs the state the previous one left, so a sequence has at most one request queued or
running at a time.

Everything per batch runs in the worker thread, off the event loop: stacking the inputs, the
model, then for each request its `after` post-processing (the stream's bookkeeping and its
response message) and the `prepare` of that stream's next step, whose request is queued as
the batch is delivered. The event loop only hands over finished results (measured: this
costs less CPU per window than post-processing on the loop, and keeps the loop free for
gRPC).

Dispatch: a free worker starts the next batch at once when it would hold `max_size` windows
or when everyone expected to submit (by default: every open sequence) has a request queued or
running; otherwise it waits until the oldest request is `max_delay_s` old. Because a stream's
next step is queued before its result is even delivered, the servicer's open sequences are
always queued or running, so in practice a free worker never idles; while a batch runs the
next one fills up, so batches grow with load by themselves.

Bounded read-ahead: a sequence runs ahead of its caller by at most `max_ahead` results. When
that many are waiting to be taken (e.g. the stream's client stopped reading, so the servicer
is blocked writing), the sequence's next step is parked instead of queued, and queued again
when the caller takes a result. A stalled caller thus costs no model runs and holds at most
`max_ahead` results, and parked sequences are not waited for when batches are formed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from segue.embedding.model import ModelOutputs, StreamModel
from segue.log import get_logger
from segue.metrics import EMBEDDER_BATCH_SIZE, EMBEDDER_QUEUE_DELAY

FloatArray = npt.NDArray[np.float32]
S = TypeVar("S")
R = TypeVar("R")

log = get_logger("segue.embedder.batcher")


class BatcherClosedError(RuntimeError):
    """The batcher was stopped; no more model runs are accepted."""


@dataclass(eq=False)
class _Sequence(Generic[S, R]):
    """One caller's ordered steps and where their results go."""

    steps: Sequence[S]
    prepare: Callable[[S], tuple[FloatArray, FloatArray]]  # step -> (pcm, state)
    after: Callable[[S, ModelOutputs], R]  # step, its outputs (batch of one) -> result
    results: asyncio.Queue[R | BaseException] = field(default_factory=asyncio.Queue)
    next_step: int = 0
    open: bool = True  # counted in Batcher._open: a step is left to run or to deliver
    abandoned: bool = False  # the caller stopped listening
    parked: _Request | None = None  # the next step, held while max_ahead results wait


@dataclass(eq=False)
class _Request:
    sequence: _Sequence[Any, Any]
    step: Any
    pcm: FloatArray  # [k * window_samples]
    state: FloatArray  # [state_dim]
    windows: int
    enqueued: float = field(default_factory=time.perf_counter)


# What the worker hands back per request: the step's result or error, and the next request.
_Outcome = tuple[Any, "_Request | None"]


class Batcher:
    """Batches the model steps of many coroutines into few model runs."""

    def __init__(
        self,
        model: StreamModel,
        *,
        max_size: int = 64,
        max_delay_s: float = 0.0,
        workers: int = 1,
        expected: Callable[[], int] | None = None,
        max_ahead: int = 4,
    ) -> None:
        if max_size < 1 or max_ahead < 1:
            raise ValueError("max_size and max_ahead must be at least 1")
        self.model = model
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self.max_ahead = max_ahead
        self._window = model.spec.window_samples
        self._pending: deque[_Request] = deque()
        # Sequences with a step left to run; each is queued, running, or being prepared.
        self._open = 0
        self._running = 0  # sequences in batches now running
        self._parked = 0  # open sequences whose next step waits for their caller
        # Callers that may submit work soon (e.g. open streams); by default the open sequences
        # that are not parked.
        self._expected = expected or (lambda: self._open - self._parked)
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
        async for out in self.stream([None], lambda _: (pcm, state), lambda _, o: o):
            return out
        raise AssertionError("unreachable: a one-step sequence yields one result")

    async def stream(
        self,
        steps: Sequence[S],
        prepare: Callable[[S], tuple[FloatArray, FloatArray]],
        after: Callable[[S, ModelOutputs], R],
    ) -> AsyncGenerator[R, None]:
        """Runs `steps` in order and yields `after(step, outputs)` for each as it is ready.

        `prepare(step)` gives the step's pcm ([k * window_samples]) and state; it is called
        when the previous step's `after` has returned, so it may read what `after` wrote.
        Both run in the worker thread (the first `prepare` on the caller's): they must not
        touch anything that other coroutines use meanwhile.
        """
        if self._closed:
            raise BatcherClosedError("the embedder is shutting down")
        if not steps:
            return
        self.start()
        sequence: _Sequence[S, R] = _Sequence(steps, prepare, after)
        self._open += 1
        try:
            self._enqueue(self._request(sequence))
            for _ in steps:
                result = await sequence.results.get()
                self._unpark(sequence)
                if isinstance(result, BaseException):
                    raise result
                yield result
        finally:
            sequence.abandoned = True
            if sequence.parked is not None:
                sequence.parked = None
                self._parked -= 1
            self._close(sequence)

    def _unpark(self, sequence: _Sequence[Any, Any]) -> None:
        """Queues a parked next step once its caller has room for its result again."""
        request = sequence.parked
        if request is None or sequence.results.qsize() >= self.max_ahead:
            return
        sequence.parked = None
        self._parked -= 1
        if self._closed:  # close() has failed the queue: nobody would run it
            self._fail(sequence, BatcherClosedError("the embedder is shutting down"))
        else:
            self._enqueue(request)

    def _request(self, sequence: _Sequence[Any, Any]) -> _Request:
        step = sequence.steps[sequence.next_step]
        sequence.next_step += 1
        pcm, state = sequence.prepare(step)
        if pcm.ndim != 1 or pcm.size == 0 or pcm.size % self._window:
            raise ValueError(
                f"pcm must hold whole windows of {self._window} samples, got {pcm.shape}"
            )
        return _Request(sequence, step, pcm, state, pcm.size // self._window)

    def _enqueue(self, request: _Request) -> None:
        self._pending.append(request)
        self._wake.set()

    async def close(self) -> None:
        """Fails queued requests, waits for running batches, and stops the worker threads."""
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        while self._pending:
            self._fail(self._pending.popleft().sequence,
                       BatcherClosedError("the embedder is shutting down"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def _close(self, sequence: _Sequence[Any, Any]) -> None:
        if sequence.open:
            sequence.open = False
            self._open -= 1

    def _fail(self, sequence: _Sequence[Any, Any], error: BaseException) -> None:
        if not sequence.abandoned:
            sequence.results.put_nowait(error)
        self._close(sequence)

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
            # No local keeps the batch: this coroutine outlives it, waiting for the next one,
            # and the batch's closures hold their streams' state.
            task = asyncio.get_running_loop().create_task(self._execute(self._take()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _complete(self) -> bool:
        """Whether everyone expected to submit has a request queued or running."""
        return len(self._pending) + self._running >= self._expected()

    async def _fill(self) -> None:
        """Waits (bounded by max_delay_s) while open sequences may still join the batch."""
        if not self._pending:
            return
        deadline = self._pending[0].enqueued + self.max_delay_s
        while True:
            now = time.perf_counter()
            if self._windows_pending() >= self.max_size or self._complete() or now >= deadline:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - now)
            except TimeoutError:
                return

    def _take(self) -> list[_Request]:
        """The oldest request plus following ones with the same k, up to max_size windows."""
        batch: list[_Request] = []
        total = 0
        keep: deque[_Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if request.sequence.abandoned:  # the caller went away
                continue
            fits = total + request.windows <= self.max_size or not batch
            if fits and (not batch or request.windows == batch[0].windows):
                batch.append(request)
                total += request.windows
            else:
                keep.append(request)
        self._pending = keep
        return batch

    def _work(self, batch: list[_Request]) -> list[_Outcome]:
        """Worker thread: one model run, then each request's post-processing and next step."""
        return self._post(batch, self._model(batch))

    def _model(self, batch: list[_Request]) -> ModelOutputs:
        pcm = np.stack([r.pcm for r in batch])
        state = np.stack([r.state for r in batch])
        return self.model.run(pcm, state)

    def _post(self, batch: list[_Request], out: ModelOutputs) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for i, request in enumerate(batch):
            sequence = request.sequence
            try:
                result = sequence.after(request.step, out.row(i))
                more = sequence.next_step < len(sequence.steps) and not sequence.abandoned
                outcomes.append((result, self._request(sequence) if more else None))
            except Exception as e:  # this stream's failure, not the batch's
                outcomes.append((e, None))
        return outcomes

    async def _execute(self, batch: list[_Request]) -> None:
        try:
            if not batch:
                return
            started = time.perf_counter()
            for request in batch:
                EMBEDDER_QUEUE_DELAY.observe(started - request.enqueued)
            EMBEDDER_BATCH_SIZE.observe(sum(r.windows for r in batch))
            self._running += len(batch)
            try:
                outcomes = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._work, batch)
            except Exception as e:
                log.exception("model run failed", batch=len(batch))
                for request in batch:
                    self._fail(request.sequence, e)
                return
            finally:
                self._running -= len(batch)
            for request, (result, follow_up) in zip(batch, outcomes, strict=True):
                sequence = request.sequence
                if sequence.abandoned:
                    continue
                sequence.results.put_nowait(result)
                if follow_up is None:  # its last step, or it failed
                    self._close(sequence)
                elif self._closed:  # close() already failed the queue: nobody would run it
                    self._fail(sequence, BatcherClosedError("the embedder is shutting down"))
                elif sequence.results.qsize() >= self.max_ahead:  # the caller is behind
                    sequence.parked = follow_up
                    self._parked += 1
                else:
                    self._enqueue(follow_up)
        finally:
            self._slots.release()


__all__ = ["Batcher", "BatcherClosedError"]
