"""Resume tokens are encrypted (AES-256-GCM), expire, and hold only states that fit the model:
a token forged with the real key but bad contents is refused cleanly, never INTERNAL."""

from __future__ import annotations

import asyncio
import hmac
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import ThreadServer
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.audio import SUPPORTED_RATES_HZ
from segue.embedding.local import run_windows
from segue.embedding.model import StreamModel
from segue.embedding.stream_state import SongStream
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.embedder.config import DEV_TOKEN_KEY
from services.embedder.resume_token import (
    Arrays,
    TokenCodec,
    TokenContents,
    TokenError,
    TokenExpiredError,
    _pack_arrays,
    check_snapshot,
)

Req = embedder_pb2.AnalyzeRequest
FORMAT_44K = common_pb2.AudioFormat(sample_rate_hz=44100, channels=1,
                                    sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
SONG_ID = "a-very-recognisable-song-id"


def _contents(song_id: str = SONG_ID, arrays: Arrays | None = None) -> TokenContents:
    return TokenContents(song_id, "segue-stream-model-name", "1.0.0", "ab" * 32,
                         arrays if arrays is not None else {
                             "state": np.arange(200, dtype=np.float32),
                             "structure": np.frombuffer(b"STRUCTURE-MARKER" * 8, np.uint8)})


# ---- encryption --------------------------------------------------------------------------------

def test_token_bytes_reveal_neither_the_song_nor_the_model_nor_the_state() -> None:
    token = TokenCodec(b"key").encode(_contents())
    for secret in (SONG_ID.encode(), b"segue-stream-model-name", b"1.0.0", b"ab" * 32,
                   b"STRUCTURE-MARKER", np.arange(200, dtype=np.float32)[10:20].tobytes(),
                   b"state"):
        assert secret not in token


def test_each_token_has_its_own_nonce_and_both_decode() -> None:
    codec = TokenCodec(b"key")
    first, second = codec.encode(_contents()), codec.encode(_contents())
    assert first != second and first[5:17] != second[5:17]
    assert codec.decode(first).song_id == codec.decode(second).song_id == SONG_ID


def test_the_version_byte_is_authenticated_too() -> None:
    token = bytearray(TokenCodec(b"key").encode(_contents()))
    token[4] = 2  # claims to be a signed version 2 token
    with pytest.raises(TokenError, match="signature is invalid"):
        TokenCodec(b"key", accept_legacy=True).decode(bytes(token))


def test_a_token_sealed_with_another_key_is_refused_as_foreign() -> None:
    with pytest.raises(TokenError, match="another deployment"):
        TokenCodec(b"our key").decode(TokenCodec(b"their key").encode(_contents()))


@given(st.text(max_size=300))
def test_any_song_id_round_trips(song_id: str) -> None:
    codec = TokenCodec(b"key")
    assert codec.decode(codec.encode(_contents(song_id))).song_id == song_id


@pytest.mark.parametrize("shape", [(2**62, 2**62), (0, 2**63), (1,) * 200])
def test_an_absurd_array_shape_inside_a_sealed_token_is_refused_as_corrupt(
    shape: tuple[int, ...],
) -> None:
    codec = TokenCodec(b"key")
    payload = codec.payload(_contents(arrays={}))  # ends with an empty byte-array section
    name, code = b"x", b"|u1"
    forged = struct.pack(f"<HB{len(name)}sB{len(code)}sB", 1, len(name), name, len(code),
                         code, len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
    with pytest.raises(TokenError, match="corrupt"):
        codec.decode(codec.seal(payload[:-2] + forged))


# ---- expiry -----------------------------------------------------------------------------------

def test_a_token_expires_after_its_ttl() -> None:
    now = [1_000_000.0]
    codec = TokenCodec(b"key", ttl_s=60, clock=lambda: now[0])
    token = codec.encode(_contents())
    now[0] += 59
    assert codec.decode(token).song_id == SONG_ID
    now[0] += 1
    with pytest.raises(TokenExpiredError, match="expired at 1970-01-12T13:47:40Z"):
        codec.decode(token)


def test_a_ttl_of_zero_issues_tokens_that_never_expire() -> None:
    now = [1_000_000.0]
    codec = TokenCodec(b"key", ttl_s=0, clock=lambda: now[0])
    token = codec.encode(_contents())
    now[0] += 10 * 365 * 86400
    assert codec.decode(token).song_id == SONG_ID


def test_the_expiry_cannot_be_edited_without_the_key() -> None:
    now = [1_000_000.0]
    codec = TokenCodec(b"key", ttl_s=60, clock=lambda: now[0])
    token = bytearray(codec.encode(_contents()))
    token[17] ^= 0xFF  # the expiry's first ciphertext byte
    with pytest.raises(TokenError, match="could not be authenticated"):
        codec.decode(bytes(token))


# ---- the legacy signed versions --------------------------------------------------------------

def _version_2_token(key: bytes, contents: TokenContents) -> bytes:
    """A token exactly as version 2 wrote them: signed, readable, newline-joined header."""
    header = "\n".join([contents.song_id, contents.model_name, contents.model_version,
                        contents.model_sha256]).encode()
    numeric = [(k, v) for k, v in contents.arrays.items() if v.dtype != np.uint8]
    raw = [(k, v) for k, v in contents.arrays.items() if v.dtype == np.uint8]
    packed = zlib.compress(_pack_arrays(numeric), 0)
    payload = b"".join([struct.pack("<I", len(header)), header, struct.pack("<I", len(packed)),
                        packed, _pack_arrays(raw)])
    prefix = b"SGRT\x02"
    return prefix + hmac.digest(key, prefix + payload, "sha256") + payload


def test_signed_version_2_tokens_are_refused_by_default() -> None:
    with pytest.raises(TokenError, match=r"version 2 .* no longer accepted"):
        TokenCodec(b"key").decode(_version_2_token(b"key", _contents()))


def test_signed_version_2_tokens_are_read_while_legacy_tokens_are_accepted() -> None:
    codec = TokenCodec(b"key", accept_legacy=True)
    decoded = codec.decode(_version_2_token(b"key", _contents()))
    assert decoded.song_id == SONG_ID
    assert np.array_equal(decoded.arrays["state"], np.arange(200, dtype=np.float32))
    with pytest.raises(TokenError, match="signature is invalid"):
        codec.decode(_version_2_token(b"other key", _contents()))


# ---- restored state ---------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(rate=st.sampled_from(SUPPORTED_RATES_HZ),
       lengths=st.lists(st.integers(0, 40_000), min_size=1, max_size=4))
def test_every_genuine_snapshot_passes_the_state_check(
    stream_model: StreamModel, rate: int, lengths: list[int],
) -> None:
    fmt = common_pb2.AudioFormat(sample_rate_hz=rate, channels=1,
                                 sample_format=common_pb2.SAMPLE_FORMAT_F32LE)
    stream = SongStream(stream_model.spec, "s", fmt)
    rng = np.random.default_rng(sum(lengths))
    for n in lengths:
        run_windows(stream_model, stream,
                    stream.push((rng.standard_normal(n) * 0.3).astype(np.float32)))
        check_snapshot(stream.snapshot(), stream_model.spec, 1800.0)


@pytest.fixture(scope="module")
def genuine(stream_model: StreamModel) -> Arrays:
    """The state of a 44.1 kHz stream 3.3 s in (non-empty resampler history and buffer)."""
    stream = SongStream(stream_model.spec, SONG_ID, FORMAT_44K)
    noise = np.random.default_rng(3).standard_normal(int(44100 * 3.3)).astype(np.float32)
    run_windows(stream_model, stream, stream.push(noise * 0.2))
    return stream.snapshot()


def _set(name: str, index: Any, value: float) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        arrays[name] = arrays[name].copy()
        arrays[name][index] = value

    return mutate


def _replace(name: str, make: Callable[[Any], Any]) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        arrays[name] = np.asarray(make(arrays[name]))

    return mutate


def _drop(name: str) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        del arrays[name]

    return mutate


FORGERIES: dict[str, Callable[[Arrays], None]] = {
    "NaN state": _set("state", 3, math.nan),
    "Inf feel": _set("feel", 0, math.inf),
    "huge state": _set("state", 0, 1e30),
    "NaN resampler history": _set("resampler_history", 0, math.nan),
    "loud resampler history": _set("resampler_history", 0, 1e6),
    "NaN in the window buffer": _set("buffer", 0, math.nan),
    "NaN segment entry": _set("segment_entry", (0, 0), math.nan),
    "negative segment energy": _set("segment_energy", 0, -1.0),
    "NaN loudness filter": _set("loudness_zi", (0, 0), math.nan),
    "negative loudness energy": _set("loudness_energies", 0, -1.0),
    "NaN segment length": _set("settings", 0, math.nan),
    "absurd segment length": _set("settings", 0, 1e300),
    "absurd position": _set("counters", 0, 2**62),
    "negative position": _set("counters", 0, -5),
    "resampler output that does not match its input": _set("counters", 1, 10**6),
    "window count that does not match": _set("counters", 4, 99),
    "a finished stream": _set("counters", 6, 1),
    "an unknown sample format": _set("format", 2, 99),
    "an unsupported rate": _set("format", 0, 12345),
    "state of the wrong size": _replace("state", lambda a: a[:199]),
    "state of the wrong shape": _replace("state", lambda a: a.reshape(200, 1)),
    "state of the wrong dtype": _replace("state", lambda a: a.astype(np.float64)),
    "a window buffer of the wrong size": _replace("buffer", lambda a: np.append(a, a)),
    "segment arrays of different lengths": _replace("segment_exit", lambda a: a[:-1]),
    "segment windows that do not add up": _replace("segment_windows", lambda a: a + 1),
    "loudness energies of the wrong count": _replace("loudness_energies", lambda a: a[:-3]),
    "structure bytes that are garbage": _replace(
        "structure", lambda a: np.frombuffer(bytes(range(256)) * 4, np.uint8)),
    "a missing window buffer": _drop("buffer"),
    "a missing structure": _drop("structure"),
    "a missing state": _drop("state"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_state_fails_the_state_check(stream_model: StreamModel, genuine: Arrays,
                                              forgery: str) -> None:
    arrays = dict(genuine)
    FORGERIES[forgery](arrays)
    with pytest.raises(TokenError):
        check_snapshot(arrays, stream_model.spec, 1800.0)


def _token(stream_model: StreamModel, arrays: Arrays, codec: TokenCodec | None = None) -> bytes:
    spec = stream_model.spec
    return (codec or TokenCodec(DEV_TOKEN_KEY.encode())).encode(
        TokenContents(SONG_ID, spec.name, spec.version, spec.sha256, arrays))


async def _status(address: str, token: bytes, audio: bool) -> tuple[grpc.StatusCode, str]:
    config = embedder_pb2.StreamConfig(song_id=SONG_ID, format=FORMAT_44K, resume_token=token)
    async with grpc.aio.insecure_channel(address) as channel:
        analyze: Any = embedder_pb2_grpc.EmbedderStub(channel).Analyze
        call = analyze(timeout=30)
        await call.write(Req(config=config))
        if audio:  # only for the control: nothing is written after a refused config
            await call.write(Req(chunk=embedder_pb2.AudioChunk(
                pcm=np.zeros(44100, "<f4").tobytes())))
            await call.write(Req(end=embedder_pb2.EndOfStream()))
        try:
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details() or ""
        return await call.code(), ""


def test_forged_tokens_with_the_real_key_are_refused_cleanly_by_the_server(
    embedder_server: ThreadServer, stream_model: StreamModel, genuine: Arrays,
) -> None:
    tokens = {"genuine": _token(stream_model, genuine)}
    for name, mutate in FORGERIES.items():
        arrays = dict(genuine)
        mutate(arrays)
        tokens[name] = _token(stream_model, arrays)
    expired = TokenCodec(DEV_TOKEN_KEY.encode(), ttl_s=1, clock=lambda: 1_000_000.0)
    tokens["expired"] = _token(stream_model, genuine, expired)

    async def run() -> list[tuple[grpc.StatusCode, str]]:
        return list(await asyncio.gather(*(
            _status(embedder_server.address, token, name == "genuine")
            for name, token in tokens.items())))

    results = dict(zip(tokens, asyncio.run(run()), strict=True))
    assert results.pop("genuine")[0] == grpc.StatusCode.OK
    assert "expired" in results["expired"][1]
    for name, (code, details) in results.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {code} {details}"
        assert "config.resume_token" in details, f"{name}: {details}"
