"""Every kind of bad Analyze input gets its status and a clear message, while good streams
running alongside finish with correct results."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import Song, ThreadServer
from test_embedder_stream import assert_same_analysis, random_chunks

from segue.audio import mono_to_pcm
from segue.client.embedder import AnalyzeResult, EmbedderClient, f32_mono_format
from segue.embedding.local import analyze_mono
from segue.embedding.model import StreamModel
from segue.embedding.stream_state import SongStream
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.embedder.config import DEV_TOKEN_KEY
from services.embedder.resume_token import TokenCodec, TokenContents

Req = embedder_pb2.AnalyzeRequest
F32 = common_pb2.SAMPLE_FORMAT_F32LE
S16 = common_pb2.SAMPLE_FORMAT_S16LE
GOOD_FORMAT = common_pb2.AudioFormat(sample_rate_hz=22050, channels=1, sample_format=F32)
INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION


def config(
    song_id: str = "bad", fmt: common_pb2.AudioFormat = GOOD_FORMAT, token: bytes = b""
) -> Req:
    return Req(config=embedder_pb2.StreamConfig(song_id=song_id, format=fmt, resume_token=token))


def chunk(pcm: bytes) -> Req:
    return Req(chunk=embedder_pb2.AudioChunk(pcm=pcm))


END = Req(end=embedder_pb2.EndOfStream())
SECOND = np.zeros(22050, dtype=np.float32).tobytes()


def _token(stream_model: StreamModel, key: str, sha: str | None = None) -> bytes:
    stream = SongStream(stream_model.spec, "bad", GOOD_FORMAT)
    spec = stream_model.spec
    return TokenCodec(key.encode()).encode(
        TokenContents(
            song_id="bad",
            model_name=spec.name,
            model_version="0.0.1-old" if sha else spec.version,
            model_sha256=sha or spec.sha256,
            arrays=stream.snapshot(),
        )
    )


def bad_cases(stream_model: StreamModel) -> dict[str, tuple[list[Req], grpc.StatusCode, str]]:
    nan = np.zeros(100, dtype=np.float32)
    nan[37] = math.nan
    return {
        "no messages at all": ([], PRECONDITION, "empty stream"),
        "audio before the config": ([chunk(SECOND)], PRECONDITION, "first message"),
        "a second config": (
            [config(), chunk(SECOND), config()],
            PRECONDITION,
            "second config",
        ),
        "no song id": ([config(song_id="")], INVALID, "song_id"),
        "an unsupported rate": (
            [
                config(
                    fmt=common_pb2.AudioFormat(sample_rate_hz=44000, channels=1, sample_format=F32)
                )
            ],
            INVALID,
            "sample_rate_hz",
        ),
        "an unsupported channel count": (
            [
                config(
                    fmt=common_pb2.AudioFormat(sample_rate_hz=22050, channels=9, sample_format=F32)
                )
            ],
            INVALID,
            "channels",
        ),
        "an unspecified sample format": (
            [config(fmt=common_pb2.AudioFormat(sample_rate_hz=22050, channels=1))],
            INVALID,
            "sample_format",
        ),
        "a partial frame": (
            [
                config(
                    fmt=common_pb2.AudioFormat(sample_rate_hz=22050, channels=2, sample_format=S16)
                ),
                chunk(b"\x00" * 6),
            ],
            INVALID,
            "whole number",
        ),
        "NaN samples": (
            [config(), chunk(SECOND), chunk(nan.tobytes())],
            INVALID,
            "NaN or Inf",
        ),
        "an empty stream": ([config(), END], PRECONDITION, "before any audio"),
        "an oversized chunk": (
            [config(), chunk(b"\x00" * (512 * 1024 + 4))],
            INVALID,
            "oversized chunk",
        ),
        "a chunk after the end": (
            [config(), chunk(SECOND), END, chunk(SECOND)],
            PRECONDITION,
            "after end",
        ),
        "a corrupt resume token": (
            [config(token=b"SGRT\x03" + b"x" * 64)],
            INVALID,
            "could not be authenticated",
        ),
        "a foreign resume token": (
            [config(token=_token(stream_model, "another key"))],
            INVALID,
            "another deployment",
        ),
        "a token from another model version": (
            [config(token=_token(stream_model, DEV_TOKEN_KEY, sha="0" * 64))],
            INVALID,
            "0.0.1-old",
        ),
    }


async def _raw(address: str, requests: list[Req]) -> grpc.aio.AioRpcError:
    """Sends `requests` (each case ends with its offending one) and returns the error.

    Nothing is written after the offending message: a write that races the server's abort
    makes grpc-python report INTERNAL ("Internal error from Core") instead of its status.
    """
    async with grpc.aio.insecure_channel(address) as channel:
        analyze: Any = embedder_pb2_grpc.EmbedderStub(channel).Analyze  # reader/writer style
        call = analyze(timeout=30)
        for request in requests:
            await call.write(request)
        if not requests:
            await call.done_writing()
        try:
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
        except grpc.aio.AioRpcError as e:
            return e
    raise AssertionError("the stream succeeded")


async def _paced(client: EmbedderClient, song_id: str, chunks: list[bytes]) -> AnalyzeResult:
    async def slow() -> AsyncIterator[bytes]:
        for c in chunks:
            await asyncio.sleep(0.01)  # keeps the good streams open while bad ones fail
            yield c

    return await client.analyze_pcm(song_id, f32_mono_format(22050), slow())


def test_bad_inputs_fail_clearly_while_good_streams_finish_correctly(
    embedder_server: ThreadServer,
    stream_model: StreamModel,
    song_22k: Song,
) -> None:
    cases = bad_cases(stream_model)
    good_audio = [song_22k.audio[i * 22050 * 6 : (i + 1) * 22050 * 6] for i in range(3)]
    expected = [analyze_mono(stream_model, a, 22050, f"good-{i}") for i, a in enumerate(good_audio)]

    async def run() -> tuple[list[AnalyzeResult], list[grpc.aio.AioRpcError]]:
        async with EmbedderClient(embedder_server.address) as client:
            good = [
                asyncio.ensure_future(
                    _paced(client, f"good-{i}", random_chunks(a, seed=i, largest=5000))
                )
                for i, a in enumerate(good_audio)
            ]
            await asyncio.sleep(0.05)
            errors = await asyncio.gather(
                *(_raw(embedder_server.address, reqs) for reqs, _, _ in cases.values())
            )
            return list(await asyncio.gather(*good)), list(errors)

    good, errors = asyncio.run(run())
    for (name, (_, code, fragment)), error in zip(cases.items(), errors, strict=True):
        assert error.code() == code, f"{name}: {error.code()} {error.details()}"
        assert fragment in (error.details() or ""), f"{name}: {error.details()}"
    for result, want in zip(good, expected, strict=True):
        assert_same_analysis(result.analysis, want)


@pytest.mark.parametrize(
    ("seconds", "fragment"), [(0.5, "shorter than one model window"), (61.0, "exceeds max_clip_s")]
)
def test_embed_clip_refuses_clips_outside_its_length_limits(
    embedder_server: ThreadServer,
    seconds: float,
    fragment: str,
) -> None:
    # 8 kHz s16 keeps a 61 s clip under the 4 MiB message limit.
    fmt = common_pb2.AudioFormat(sample_rate_hz=8000, channels=1, sample_format=S16)
    pcm = mono_to_pcm(np.zeros(int(8000 * seconds), dtype=np.float32), S16)

    async def run() -> None:
        async with EmbedderClient(embedder_server.address) as client:
            await client.embed_clip(pcm, fmt)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(run())
    assert info.value.code() == INVALID
    assert fragment in (info.value.details() or "")


def test_embed_clip_refuses_partial_frames(embedder_server: ThreadServer) -> None:
    async def run() -> None:
        async with EmbedderClient(embedder_server.address) as client:
            await client.embed_clip(b"\x00" * 22051 * 4 + b"\x00", GOOD_FORMAT)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(run())
    assert info.value.code() == INVALID
