"""The mixer over real gRPC on loopback: streamed output, and every bad input by name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from mixer_fixtures import RATE, MixerThreadServer, analysis_of, click_analysis, click_track, song

from segue.audio import decode, encode
from segue.client.mixer import Excerpt, MixerClient, MixResult, build_requests
from segue.v1 import mixer_pb2, mixer_pb2_grpc
from segue.v1.mixer_pb2 import TransitionStyle


@pytest.fixture(scope="module")
def mixer() -> Iterator[MixerThreadServer]:
    server = MixerThreadServer(max_concurrent=4).start()
    yield server
    server.stop()


def short_pair(seconds: float = 14.0) -> tuple[Excerpt, Excerpt]:
    a, b = song(21, 124.0, seconds), song(22, 120.0, seconds)
    return (
        Excerpt.from_array(a.audio, RATE, analysis_of(a)),
        Excerpt.from_array(b.audio, RATE, analysis_of(b)),
    )


def render(address: str, outgoing: Excerpt, incoming: Excerpt, **kwargs: object) -> MixResult:
    async def run() -> MixResult:
        async with MixerClient(address) as client:
            return await client.render_transition(outgoing, incoming, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(run())


def expect_invalid(
    address: str, outgoing: Excerpt, incoming: Excerpt, match: str, **kwargs: object
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        render(address, outgoing, incoming, **kwargs)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in (err.value.details() or ""), err.value.details()


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_streamed_output_decodes_to_the_reported_duration(
    mixer: MixerThreadServer, fmt: str
) -> None:
    a, b = short_pair()
    result = render(
        mixer.address, a, b, style=TransitionStyle(bars=2), output_format=fmt, context_s=1.5
    )
    decoded = decode(result.audio, RATE, channels=2)
    # mp3 and ogg encoders add up to a few ms of priming/padding.
    assert decoded.shape[0] / RATE == pytest.approx(result.report.duration_s, abs=0.06)
    assert result.output_format == fmt and result.sample_rate_hz == RATE
    expected = result.report.overlap_s + 2 * 1.5
    assert result.report.duration_s == pytest.approx(expected, abs=0.05)


def test_envelope_and_report_describe_the_mix(mixer: MixerThreadServer) -> None:
    a, b = short_pair()
    result = render(
        mixer.address,
        a,
        b,
        style=TransitionStyle(bars=2, eq_bass_swap=True),
        output_format="wav",
        context_s=1.0,
        output_sample_rate_hz=48000,
    )
    env, report = result.envelope, result.report
    assert result.chunks >= 1 and result.sample_rate_hz == 48000
    assert (
        len(env.gain_outgoing)
        == len(env.gain_incoming)
        == pytest.approx(report.duration_s * env.rate_hz, abs=2)
    )
    out, inc = np.array(env.gain_outgoing), np.array(env.gain_incoming)
    assert out[0] == pytest.approx(1.0) and inc[0] == pytest.approx(0.0)
    assert out[-1] == pytest.approx(0.0, abs=1e-6) and inc[-1] == pytest.approx(1.0)
    assert np.allclose(out**2 + inc**2, 1.0, atol=1e-5)  # equal power
    assert env.overlap_end_s - env.overlap_start_s == pytest.approx(report.overlap_s)
    assert report.overlap_bars == 2 and report.beat_alignment_error_ms <= 10.0
    assert report.true_peak_dbtp <= -1.0 and report.output_loudness_lufs == pytest.approx(
        -14.0, abs=1.0
    )


def test_mashup_overlays_the_requested_bars_with_both_songs_at_full_level(
    mixer: MixerThreadServer,
) -> None:
    a, b = short_pair(20.0)

    async def run() -> MixResult:
        async with MixerClient(mixer.address) as client:
            return await client.render_mashup(a, b, bars=4, context_s=1.0)

    result = asyncio.run(run())
    out, inc = np.array(result.envelope.gain_outgoing), np.array(result.envelope.gain_incoming)
    assert result.report.overlap_bars == 4
    assert (
        np.count_nonzero((out > 0.99) & (inc > 0.99)) / result.envelope.rate_hz
        >= 0.45 * result.report.overlap_s
    )


def test_undecodable_bytes_are_invalid_argument_naming_the_excerpt(
    mixer: MixerThreadServer,
) -> None:
    _, b = short_pair()
    expect_invalid(
        mixer.address, Excerpt(b"this is not audio" * 100), b, "outgoing excerpt: undecodable audio"
    )


def test_an_excerpt_shorter_than_the_overlap_is_invalid_argument(mixer: MixerThreadServer) -> None:
    a, b = short_pair()
    expect_invalid(
        mixer.address, a, b, "shorter than the requested overlap", style=TransitionStyle(bars=16)
    )


def test_mismatched_pcm_sample_rates_are_invalid_argument(mixer: MixerThreadServer) -> None:
    a, _ = short_pair()
    s = song(22, 120.0, 14.0)
    b = Excerpt.from_array(s.audio[::2].copy(), RATE // 2, analysis_of(s))
    expect_invalid(mixer.address, a, b, "mismatched sample rates")


def test_a_tempo_ratio_beyond_the_stretch_limit_is_invalid_argument(
    mixer: MixerThreadServer,
) -> None:
    a, _ = short_pair()
    slow, beats = click_track(100.0, 14.0, 2000.0)
    b = Excerpt.from_array(slow, RATE, click_analysis(beats, 100.0))
    expect_invalid(mixer.address, a, b, "beyond the stretch limit", style=TransitionStyle(bars=2))


def test_an_unknown_output_format_is_invalid_argument(mixer: MixerThreadServer) -> None:
    a, b = short_pair()
    config = mixer_pb2.RenderConfig(output_format=9)  # type: ignore[arg-type]
    config.style.bars = 2

    async def run() -> None:
        async with grpc.aio.insecure_channel(mixer.address) as channel:
            stub = mixer_pb2_grpc.MixerStub(channel)
            async for _ in stub.RenderTransition(_aiter(build_requests(a, b, config))):
                pass

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(run())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown output_format 9" in (err.value.details() or "")


def test_encoded_excerpts_in_any_ffmpeg_format_are_accepted(mixer: MixerThreadServer) -> None:
    a, b = song(21, 124.0, 14.0), song(22, 120.0, 14.0)
    result = render(
        mixer.address,
        Excerpt(encode(a.audio, RATE, "ogg"), analysis=analysis_of(a)),
        Excerpt(encode(b.audio, RATE, "mp3"), analysis=analysis_of(b)),
        style=TransitionStyle(bars=2),
        context_s=1.0,
    )
    assert result.report.overlap_bars == 2 and len(result.audio) > 44


def test_a_chunk_before_the_config_is_failed_precondition(mixer: MixerThreadServer) -> None:
    async def run() -> None:
        async with grpc.aio.insecure_channel(mixer.address) as channel:
            stub = mixer_pb2_grpc.MixerStub(channel)
            chunk = mixer_pb2.RenderRequest(
                chunk=mixer_pb2.ExcerptChunk(side=mixer_pb2.SIDE_OUTGOING, data=b"\0" * 8)
            )
            async for _ in stub.RenderTransition(_aiter(iter([chunk]))):
                pass

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(run())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _aiter(items: Iterator[mixer_pb2.RenderRequest]):  # type: ignore[no-untyped-def]
    for item in items:
        yield item
