"""The SDK's one deadline policy: 30 s for unary calls, 30 s plus half the audio for streams,
overridable per client and per call, and None for no deadline at all."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from client_servers import Gateway, gateway_server
from thread_server import ThreadServer

from segue.client import (
    DEFAULT_POLICY,
    DeadlineExceededError,
    EmbedderClient,
    Excerpt,
    MatcherClient,
    MixerClient,
    SegueError,
    TimeoutPolicy,
)
from segue.client.embedder import f32_mono_format
from segue.client.mixer import ENCODED_BYTES_PER_S_FLOOR
from segue.client.types import SongAnalysis

RATE = 22050
F32 = f32_mono_format(RATE)
SECOND = np.zeros(RATE, dtype=np.float32).tobytes()


@pytest.fixture(scope="module")
def gateway_thread() -> Iterator[ThreadServer[Gateway]]:
    server = gateway_server()
    yield server
    server.stop()


@pytest.fixture
def refusing(gateway_thread: ThreadServer[Gateway]) -> str:
    """A gateway that answers every call at once with INTERNAL; its address."""
    assert gateway_thread.servicer is not None
    gateway_thread.servicer.__init__()  # type: ignore[misc]
    return gateway_thread.address


@pytest.fixture
def hung(refusing: str, gateway_thread: ThreadServer[Gateway]) -> str:
    """A gateway that never answers; its address."""
    assert gateway_thread.servicer is not None
    gateway_thread.servicer.hang = True
    return refusing


def deadline_of(call: Awaitable[Any]) -> float | None:
    """The deadline (s) a call ran under, as its error reports it."""

    async def run() -> float | None:
        try:
            await call
        except SegueError as e:
            return e.timeout_s
        raise AssertionError("the call succeeded")

    return asyncio.run(run())


def with_client(client_type: Any, address: str, call: Callable[[Any], Awaitable[Any]],
                **kwargs: Any) -> Coroutine[Any, Any, Any]:
    async def run() -> Any:
        async with client_type(address, **kwargs) as client:
            return await call(client)

    return run()


def timed_failure(call: Awaitable[Any]) -> tuple[SegueError, float]:
    """The SegueError a call raises and the seconds it took to raise it."""

    async def run() -> SegueError:
        try:
            await call
        except SegueError as e:
            return e
        raise AssertionError("the call succeeded")

    started = time.monotonic()
    error = asyncio.run(run())
    return error, time.monotonic() - started


def pcm(seconds: int) -> Excerpt:
    return Excerpt.from_array(np.zeros(RATE * seconds, dtype=np.float32), RATE)


def test_the_default_policy_gives_unary_calls_30_s_and_streams_30_s_plus_half_their_audio(
) -> None:
    assert DEFAULT_POLICY.unary_s == 30.0
    assert DEFAULT_POLICY.stream_s(0.0) == 30.0
    assert DEFAULT_POLICY.stream_s(60.0) == 60.0
    assert DEFAULT_POLICY.stream_s(1800.0) == 930.0  # the longest song the embedder takes
    assert DEFAULT_POLICY.stream_s(None) == 1830.0  # length unknown: 30 min at real time


def test_every_client_applies_the_default_policy_to_every_kind_of_call(refusing: str) -> None:
    analyze_10_s = deadline_of(with_client(
        EmbedderClient, refusing, lambda e: e.analyze_pcm("s", F32, [SECOND] * 10)))
    assert analyze_10_s == 35.0
    assert deadline_of(with_client(
        EmbedderClient, refusing, lambda e: e.analyze_audio("s", np.zeros(RATE * 4), RATE),
    )) == 32.0
    assert deadline_of(with_client(EmbedderClient, refusing, lambda e: e.model_info())) == 30.0
    assert deadline_of(with_client(MatcherClient, refusing, lambda m: m.get_song("s"))) == 30.0
    assert deadline_of(with_client(
        MixerClient, refusing, lambda m: m.render_transition(pcm(4), pcm(6)))) == 35.0
    assert deadline_of(with_client(
        MixerClient, refusing, lambda m: m.render_mashup(pcm(8), pcm(12)))) == 40.0


async def _endless() -> AsyncIterator[bytes]:
    while True:
        yield SECOND


def test_a_stream_whose_length_is_unknown_gets_the_unknown_length_deadline(
    refusing: str,
) -> None:
    assert deadline_of(with_client(
        EmbedderClient, refusing, lambda e: e.analyze_pcm("live", F32, _endless()))) == 1830.0


def test_an_encoded_excerpt_is_sized_by_its_analysis_or_else_by_its_bytes() -> None:
    encoded = Excerpt(b"\0" * 40_000)
    assert encoded.audio_s() == 40_000 / ENCODED_BYTES_PER_S_FLOOR
    analysed = Excerpt(b"\0" * 40_000, analysis=SongAnalysis(duration_s=31.5))
    assert analysed.audio_s() == 31.5
    assert pcm(3).audio_s() == 3.0


def test_a_hung_server_is_given_up_on_at_the_policys_deadline(hung: str) -> None:
    policy = TimeoutPolicy(unary_s=0.3)
    error, took = timed_failure(with_client(
        MatcherClient, hung, lambda m: m.get_song("s"), timeout_s=policy))
    assert isinstance(error, DeadlineExceededError) and error.timeout_s == 0.3
    assert 0.25 < took < 3.0


def test_a_streams_deadline_grows_with_the_audio_it_carries(hung: str) -> None:
    policy = TimeoutPolicy(stream_base_s=0.2, stream_s_per_audio_s=0.1)
    short, short_took = timed_failure(with_client(
        EmbedderClient, hung, lambda e: e.analyze_pcm("s", F32, [SECOND] * 2),
        timeout_s=policy))
    long, long_took = timed_failure(with_client(
        EmbedderClient, hung, lambda e: e.analyze_pcm("s", F32, [SECOND] * 12),
        timeout_s=policy))
    assert isinstance(short, DeadlineExceededError) and isinstance(long, DeadlineExceededError)
    assert (short.timeout_s, long.timeout_s) == pytest.approx((0.4, 1.4))
    assert long_took - short_took > 0.7


def test_a_per_call_timeout_overrides_the_clients(hung: str) -> None:
    error, took = timed_failure(with_client(
        MatcherClient, hung, lambda m: m.get_song("s", timeout_s=0.3), timeout_s=60.0))
    assert isinstance(error, DeadlineExceededError) and error.timeout_s == 0.3
    assert took < 3.0


def test_a_number_is_the_deadline_of_streaming_calls_too(hung: str) -> None:
    error, took = timed_failure(with_client(
        EmbedderClient, hung, lambda e: e.analyze_pcm("s", F32, [SECOND] * 600),
        timeout_s=0.3))
    assert isinstance(error, DeadlineExceededError) and error.timeout_s == 0.3
    assert took < 3.0


def test_none_means_no_deadline_for_the_client_or_for_one_call(hung: str) -> None:
    async def still_waiting(call: Awaitable[Any]) -> bool:
        try:
            await asyncio.wait_for(call, 1.0)
        except TimeoutError:  # asyncio's: gRPC itself never gave up
            return True
        return False

    assert asyncio.run(still_waiting(with_client(
        MatcherClient, hung, lambda m: m.get_song("s"), timeout_s=None)))
    assert asyncio.run(still_waiting(with_client(
        MatcherClient, hung, lambda m: m.get_song("s", timeout_s=None), timeout_s=0.2)))


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_timeouts_that_are_not_a_positive_number_of_seconds_are_refused(
    refusing: str, bad: float,
) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        asyncio.run(with_client(MatcherClient, refusing, lambda m: m.get_song("s"),
                                timeout_s=bad))
    with pytest.raises(ValueError, match="timeout_s"):
        asyncio.run(with_client(MatcherClient, refusing,
                                lambda m: m.get_song("s", timeout_s=bad)))
    with pytest.raises(ValueError, match="unary_s"):
        TimeoutPolicy(unary_s=bad)


def test_grpc_sees_the_same_deadline_the_error_reports(hung: str) -> None:
    error, took = timed_failure(with_client(
        MixerClient, hung, lambda m: m.render_transition(pcm(2), pcm(2)),
        timeout_s=TimeoutPolicy(stream_base_s=0.3, stream_s_per_audio_s=0.1)))
    assert isinstance(error, DeadlineExceededError)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.timeout_s == pytest.approx(0.7) and 0.6 < took < 3.0
