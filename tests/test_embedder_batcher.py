"""The sequence batcher: many streams' steps share model runs, each stream stays exact."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import Song

from segue.embedding.model import FloatArray, ModelOutputs, StreamModel
from services.embedder.batcher import Batcher, BatcherClosedError


class _Stream:
    """A minimal stream: its windows, its recurrent state, and what the batcher ran."""

    def __init__(self, model: StreamModel, audio: FloatArray) -> None:
        window = model.spec.window_samples
        self.windows = [audio[i : i + window] for i in range(0, audio.size - window + 1, window)]
        self.state = np.zeros(model.spec.state_dim, dtype=np.float32)
        self.embeddings: list[FloatArray] = []

    def prepare(self, index: int) -> tuple[FloatArray, FloatArray]:
        return self.windows[index], self.state

    def after(self, index: int, out: ModelOutputs) -> int:
        self.state = out.state[0].copy()
        self.embeddings.append(out.embedding[0, 0].copy())
        return index


def _alone(model: StreamModel, audio: FloatArray) -> list[FloatArray]:
    """The reference: the stream's windows run one by one, batch of one."""
    stream = _Stream(model, audio)
    for i, window in enumerate(stream.windows):
        stream.after(i, model.run(window[None, :], stream.state[None, :]))
    return stream.embeddings


async def _run(batcher: Batcher, stream: _Stream) -> list[int]:
    steps = list(range(len(stream.windows)))
    return [i async for i in batcher.stream(steps, stream.prepare, stream.after)]


class _Counting(StreamModel):
    """The real model, noting the batch size of every run in `runs`."""

    def __init__(self, model: StreamModel, runs: list[int]) -> None:
        self.spec = model.spec
        self._model = model
        self._runs = runs

    def run(self, pcm: FloatArray, state: FloatArray) -> ModelOutputs:
        self._runs.append(pcm.shape[0])
        return self._model.run(pcm, state)


def test_concurrent_streams_share_runs_and_each_gets_its_own_exact_results(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    audios = [song_22k.audio[i * 22050 * 3 : (i + 1) * 22050 * 3] for i in range(6)]
    streams = [_Stream(stream_model, a) for a in audios]
    runs: list[int] = []

    async def main() -> list[list[int]]:
        batcher = Batcher(_Counting(stream_model, runs), max_size=64)
        try:
            return list(await asyncio.gather(*(_run(batcher, s) for s in streams)))
        finally:
            await batcher.close()

    order = asyncio.run(main())
    assert order == [[0, 1, 2]] * len(streams), "each stream's steps come back in order"
    assert max(runs) > 1, f"streams were batched together (batch sizes {runs})"
    assert sum(runs) == 3 * len(streams)
    for stream, audio in zip(streams, audios, strict=True):
        for got, want in zip(stream.embeddings, _alone(stream_model, audio), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


# A batch that waited out this delay would stall its test for a day; the guard fails the test
# long before that (how fast batches go is bench/bench_batcher.py's to measure, not a test's).
NEVER_S = 86400.0
STALL_GUARD_S = 60.0


def test_a_free_worker_does_not_wait_out_the_delay_when_every_stream_is_queued(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    streams = [_Stream(stream_model, song_22k.audio[: 22050 * 4]) for _ in range(3)]
    runs: list[int] = []

    async def main() -> list[list[int]]:
        batcher = Batcher(_Counting(stream_model, runs), max_size=64, max_delay_s=NEVER_S)
        try:
            return list(await asyncio.gather(*(_run(batcher, s) for s in streams)))
        finally:
            await batcher.close()

    order = asyncio.run(asyncio.wait_for(main(), STALL_GUARD_S))
    assert order == [[0, 1, 2, 3]] * 3, "4 steps of 3 streams never waited for the delay"
    assert runs == [3, 3, 3, 3], "each batch started once every stream had its step queued"


def test_a_failing_step_fails_only_its_own_stream(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    good = _Stream(stream_model, song_22k.audio[: 22050 * 3])
    bad = _Stream(stream_model, song_22k.audio[: 22050 * 3])

    def explode(index: int, out: ModelOutputs) -> int:
        raise ValueError(f"bookkeeping failed at step {index}")

    async def main() -> list[int]:
        batcher = Batcher(stream_model)
        try:
            failing = _collect(batcher.stream([0, 1], bad.prepare, explode))
            results = await asyncio.gather(_run(batcher, good), failing, return_exceptions=True)
        finally:
            await batcher.close()
        assert isinstance(results[1], ValueError) and "step 0" in str(results[1])
        assert not isinstance(results[0], BaseException)
        return results[0]

    assert asyncio.run(main()) == [0, 1, 2]
    assert len(good.embeddings) == 3


async def _collect(results: object) -> list[int]:
    return [i async for i in results]  # type: ignore[attr-defined]


def test_a_caller_that_stops_listening_leaves_the_others_running(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    leaving = _Stream(stream_model, song_22k.audio[: 22050 * 6])
    staying = _Stream(stream_model, song_22k.audio[: 22050 * 6])

    async def first_only() -> int:
        steps = list(range(len(leaving.windows)))
        async for i in batcher_ref[0].stream(steps, leaving.prepare, leaving.after):
            return i
        raise AssertionError("no result")

    batcher_ref: list[Batcher] = []

    async def main() -> tuple[int, list[int]]:
        batcher = Batcher(stream_model)
        batcher_ref.append(batcher)
        try:
            left, stayed = await asyncio.gather(first_only(), _run(batcher, staying))
            await asyncio.sleep(0.05)  # any step of the leaver still queued would run now
            return left, stayed
        finally:
            await batcher.close()

    left, stayed = asyncio.run(main())
    assert (left, stayed) == (0, list(range(6)))
    assert len(leaving.embeddings) < 6, "the abandoned sequence stopped early"


def test_steps_must_hold_whole_windows(stream_model: StreamModel) -> None:
    async def main() -> None:
        batcher = Batcher(stream_model)
        try:
            with pytest.raises(ValueError, match="whole windows"):
                await batcher.run(np.zeros(100, np.float32),
                                  np.zeros(stream_model.spec.state_dim, np.float32))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_closing_fails_streams_with_steps_left_instead_of_leaving_them_waiting(
    stream_model: StreamModel, song_22k: Song,
) -> None:
    stream = _Stream(stream_model, song_22k.audio[: 22050 * 8])

    async def main() -> tuple[list[int], BaseException | None]:
        batcher = Batcher(stream_model)
        got: list[int] = []
        error: BaseException | None = None
        steps = list(range(len(stream.windows)))
        try:
            async for i in batcher.stream(steps, stream.prepare, stream.after):
                got.append(i)
                if i == 0:
                    # Step 1 is queued or running now; closing must fail the rest of the steps.
                    asyncio.get_running_loop().create_task(batcher.close())
        except BatcherClosedError as e:
            error = e
        return got, error

    got, error = asyncio.run(asyncio.wait_for(main(), 10))
    assert isinstance(error, BatcherClosedError)
    assert got[0] == 0 and len(got) < 8
