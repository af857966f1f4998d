"""The embedder against bad input and hostile clients: every refusal is clean and names its
field, and clients that stop reading or trickle audio lose their stream and free its slot."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from conftest import Song, ThreadServer, embedder_thread_server, make_embedder_server

from segue.client.embedder import EmbedderClient, f32_mono_format
from segue.embedding.model import FloatArray, ModelOutputs, StreamModel
from segue.embedding.stream_state import SongStream
from segue.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from services.embedder.batcher import Batcher
from services.embedder.config import EmbedderConfig
from services.embedder.servicer import EmbedderServicer

Req = embedder_pb2.AnalyzeRequest
F32 = common_pb2.SAMPLE_FORMAT_F32LE
FORMAT = f32_mono_format(22050)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SECOND = np.zeros(22050, dtype=np.float32).tobytes()
END = Req(end=embedder_pb2.EndOfStream())


def config(song_id: str = "h", fmt: common_pb2.AudioFormat = FORMAT, interval: float = 0.0,
           token: bytes = b"") -> Req:
    return Req(config=embedder_pb2.StreamConfig(song_id=song_id, format=fmt, resume_token=token,
                                                checkpoint_interval_s=interval))


def chunk(samples: npt.ArrayLike) -> Req:
    return Req(chunk=embedder_pb2.AudioChunk(pcm=np.asarray(samples, "<f4").tobytes()))


async def raw_status(address: str, requests: list[Req]) -> tuple[grpc.StatusCode, str]:
    """Writes `requests` (nothing after an offending one) and reads to the end of the call."""
    async with grpc.aio.insecure_channel(address) as channel:
        analyze: Any = embedder_pb2_grpc.EmbedderStub(channel).Analyze
        call = analyze(timeout=30)
        for request in requests:
            await call.write(request)
        try:
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details() or ""
        return await call.code(), await call.details()


def statuses(address: str, cases: list[list[Req]]) -> list[tuple[grpc.StatusCode, str]]:
    async def run() -> list[tuple[grpc.StatusCode, str]]:
        return list(await asyncio.gather(*(raw_status(address, c) for c in cases)))

    return asyncio.run(run())


async def _error(coro: Any) -> grpc.aio.AioRpcError:
    try:
        await coro
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the call succeeded")


# ---- 1. the config is checked whole before the stream is accepted ---------------------------

def test_a_bad_config_is_always_a_clean_invalid_argument_for_the_sdk(
    embedder_server: ThreadServer,
) -> None:
    # The SDK writes audio as soon as the stream is accepted; were a bad config accepted
    # first, its writes would race the refusal and some calls would end INTERNAL.
    bad: list[tuple[str, dict[str, Any]]] = [
        ("", {}), ("line\nbreak", {}), ("ok", {"checkpoint_interval_s": 0.001}),
        ("ok", {"resume_token": b"SGRT\x03" + b"x" * 40})]
    fields = ["config.song_id", "config.song_id", "config.checkpoint_interval_s",
              "config.resume_token"]

    async def run() -> list[grpc.aio.AioRpcError]:
        async with EmbedderClient(embedder_server.address) as client:
            calls = [client.analyze_pcm(song_id, FORMAT, [SECOND] * 3, **kwargs)
                     for _ in range(8) for song_id, kwargs in bad]
            return list(await asyncio.gather(*(_error(c) for c in calls)))

    errors = asyncio.run(run())
    for i, error in enumerate(errors):
        assert (error.code(), fields[i % len(bad)] in (error.details() or "")) == (INVALID, True), (
            f"{bad[i % len(bad)]}: {error.code()} {error.details()}")


async def _metadata_and_status(address: str, request: Req) -> tuple[bool, grpc.StatusCode]:
    """Whether the server accepted the stream of `request` (a config), and its status."""
    async with grpc.aio.insecure_channel(address) as channel:
        analyze: Any = embedder_pb2_grpc.EmbedderStub(channel).Analyze
        call = analyze(timeout=30)
        await call.write(request)
        accepted = ("segue-stream", "accepted") in tuple(await call.initial_metadata() or ())
        return accepted, await call.code()


@pytest.mark.parametrize("request_", [
    config(song_id=""), config(song_id="a\tb"), config(interval=0.5),
    config(fmt=common_pb2.AudioFormat(sample_rate_hz=44000, channels=1, sample_format=F32)),
    config(token=b"SGRT\x03" + b"x" * 40),
], ids=["empty id", "tab in id", "short interval", "bad rate", "bad token"])
def test_a_bad_config_is_refused_before_the_stream_is_accepted(
    embedder_server: ThreadServer, request_: Req,
) -> None:
    accepted, code = asyncio.run(_metadata_and_status(embedder_server.address, request_))
    assert (accepted, code) == (False, INVALID)


# ---- 2. song ids ------------------------------------------------------------------------------

@pytest.mark.parametrize("song_id", ["a\nb", "tab\there", "del\x7f", "nul\x00", "c1\x85x",
                                     "ls\u2028", "cr\r", "x" * 257, ""])
def test_song_ids_outside_the_documented_charset_are_refused(
    embedder_server: ThreadServer, song_id: str,
) -> None:
    [(code, details)] = statuses(embedder_server.address, [[config(song_id=song_id)]])
    assert code == INVALID
    assert "config.song_id" in details


def test_printable_unicode_song_ids_stream_and_resume(embedder_server: ThreadServer,
                                                     song_22k: Song) -> None:
    song_id = "Ünïcødé 🎵 – «song» (live) " + "é" * 200
    audio = song_22k.audio[: 22050 * 3]
    chunks = [np.asarray(audio[i : i + 11025], "<f4").tobytes()
              for i in range(0, audio.size, 11025)]

    async def run() -> tuple[float, float]:
        async with EmbedderClient(embedder_server.address) as client:
            full = await client.analyze_pcm(song_id, FORMAT, chunks, checkpoint_interval_s=1.0)
            checkpoint = full.checkpoints[0]
            resumed = await client.resume(song_id, FORMAT, checkpoint, chunks[2:])
            return full.analysis.duration_s, resumed.analysis.duration_s

    assert asyncio.run(run()) == (3.0, 3.0)


# ---- 3. float samples --------------------------------------------------------------------------

def _with(value: float, at: int = 100, channels: int = 1) -> FloatArray:
    samples = np.zeros(2205 * channels, dtype=np.float32)
    samples[at] = value
    return samples


def test_float_samples_beyond_the_documented_range_are_refused_naming_the_field(
    embedder_server: ThreadServer,
) -> None:
    stereo = common_pb2.AudioFormat(sample_rate_hz=22050, channels=2, sample_format=F32)
    huge = np.full(4410, 3e38, dtype=np.float32)  # finite, but its channel mean overflows
    cases = [
        [config(), chunk(_with(1e30))],
        [config(), chunk(_with(64.5))],
        [config(), chunk(_with(-math.inf))],
        [config(fmt=stereo), chunk(huge)],
    ]
    results = statuses(embedder_server.address, cases)
    for (code, details), fragment in zip(results, ["1e+30", "64.5", "NaN or Inf", "3e+38"],
                                         strict=True):
        assert code == INVALID, details
        assert "chunk.pcm" in details and fragment in details, details


def test_the_loudest_allowed_float_samples_are_analysed(embedder_server: ThreadServer) -> None:
    loud = np.sign(np.sin(np.arange(22050 * 2) / 7.0)).astype(np.float32) * 64.0

    async def run() -> Any:
        async with EmbedderClient(embedder_server.address) as client:
            return await client.analyze_pcm("loud", FORMAT, [loud.tobytes()])

    result = asyncio.run(run())
    assert result.analysis.duration_s == 2.0
    assert np.isfinite(result.analysis.feel).all() and np.isfinite(result.analysis.loudness_lufs)


@pytest.mark.parametrize(("value", "fragment"), [(1e30, "1e+30"), (math.nan, "NaN or Inf")])
def test_embed_clip_refuses_out_of_range_samples_naming_the_field(
    embedder_server: ThreadServer, value: float, fragment: str,
) -> None:
    clip = np.zeros(22050 * 2, dtype=np.float32)
    clip[30_000] = value

    async def run() -> None:
        async with EmbedderClient(embedder_server.address) as client:
            await client.embed_clip(clip.tobytes(), FORMAT)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(run())
    assert info.value.code() == INVALID
    assert "EmbedClipRequest.pcm" in (info.value.details() or "")
    assert fragment in (info.value.details() or "")


# ---- 8. checkpoint interval -------------------------------------------------------------------

@pytest.mark.parametrize("interval", [0.001, 0.999, -1.0, math.nan, math.inf])
def test_checkpoint_intervals_below_the_floor_or_not_finite_are_refused(
    embedder_server: ThreadServer, interval: float,
) -> None:
    [(code, details)] = statuses(embedder_server.address, [[config(interval=interval)]])
    assert code == INVALID
    assert "config.checkpoint_interval_s" in details and "at least 1" in details


def test_the_floor_itself_is_accepted(embedder_server: ThreadServer) -> None:
    async def run() -> Any:
        async with EmbedderClient(embedder_server.address) as client:
            return await client.analyze_pcm("floor", FORMAT, [SECOND] * 3,
                                            checkpoint_interval_s=1.0)

    assert [c.position_s for c in asyncio.run(run()).checkpoints] == [1.0, 2.0, 3.0]


# ---- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "variable"), [
    ("checkpoint_interval_s", 0.5, "SEGUE_CHECKPOINT_INTERVAL_S"),
    ("stream_write_timeout_s", 0.0, "SEGUE_STREAM_WRITE_TIMEOUT_S"),
    ("stream_write_timeout_s", math.nan, "SEGUE_STREAM_WRITE_TIMEOUT_S"),
    ("min_audio_rate", -0.1, "SEGUE_MIN_AUDIO_RATE"),
    ("min_audio_rate_grace_s", math.inf, "SEGUE_MIN_AUDIO_RATE_GRACE_S"),
    ("token_ttl_s", -1.0, "SEGUE_TOKEN_TTL_S"),
    ("max_song_s", math.nan, "SEGUE_MAX_SONG_S"),
    ("checkpoint_bytes_per_s", -1.0, "SEGUE_CHECKPOINT_BYTES_PER_S"),
    ("checkpoint_bytes_per_s", math.inf, "SEGUE_CHECKPOINT_BYTES_PER_S"),
])
def test_invalid_settings_are_refused_naming_their_variable(field: str, value: float,
                                                            variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        EmbedderConfig(**{field: value}).validate()  # type: ignore[arg-type]


def test_the_new_settings_are_read_from_the_environment_with_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = EmbedderConfig.from_env()
    assert (defaults.stream_write_timeout_s, defaults.min_audio_rate,
            defaults.min_audio_rate_grace_s, defaults.token_ttl_s,
            defaults.token_accept_legacy, defaults.checkpoint_bytes_per_s) == (
        30.0, 0.5, 10.0, 86400.0, False, 32768.0)
    for name, value in [("SEGUE_STREAM_WRITE_TIMEOUT_S", "5"), ("SEGUE_MIN_AUDIO_RATE", "0"),
                        ("SEGUE_MIN_AUDIO_RATE_GRACE_S", "3"), ("SEGUE_TOKEN_TTL_S", "0"),
                        ("SEGUE_TOKEN_ACCEPT_LEGACY", "1"), ("SEGUE_CHECKPOINT_BYTES_PER_S", "0")]:
        monkeypatch.setenv(name, value)
    config = EmbedderConfig.from_env()
    assert (config.stream_write_timeout_s, config.min_audio_rate, config.min_audio_rate_grace_s,
            config.token_ttl_s, config.token_accept_legacy,
            config.checkpoint_bytes_per_s) == (5.0, 0.0, 3.0, 0.0, True, 0.0)


# ---- 6. clients that stop reading --------------------------------------------------------------

@pytest.fixture
def impatient_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    server = make_embedder_server(stream_model_path, stream_write_timeout_s=0.5,
                                  max_concurrent_streams=1, checkpoint_interval_s=1.0)
    yield server
    server.stop()


async def _never_reads(address: str, released: Callable[[], bool]) -> grpc.aio.AioRpcError:
    """Streams a minute of audio without reading a response until `released()` (the server
    ended the stream) or 10 s passed; then reads the outcome."""
    # Without BDP probing the client's flow-control window stays at 64 KiB, so the server's
    # writes block after a few responses, as with any client that stops reading.
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        analyze: Any = embedder_pb2_grpc.EmbedderStub(channel).Analyze
        call = analyze(timeout=60)
        await call.write(config(song_id="deaf", interval=1.0))
        await call.initial_metadata()
        noise = np.random.default_rng(0).standard_normal(22050 * 60).astype(np.float32) * 0.1

        async def write_all() -> None:
            for i in range(0, noise.size, 22050):
                await call.write(chunk(noise[i : i + 22050]))

        writer = asyncio.ensure_future(write_all())
        for _ in range(1000):
            if released():
                break
            await asyncio.sleep(0.01)
        # Read the outcome before stopping the writer: cancelling a write that is still
        # blocked cancels the whole call locally, which would hide the server's status.
        try:
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
        except grpc.aio.AioRpcError as e:
            return e
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
    raise AssertionError("the stream succeeded")


def test_a_client_that_stops_reading_loses_its_stream_and_frees_its_slot(
    impatient_server: ThreadServer,
) -> None:
    servicer = impatient_server.servicer
    assert servicer is not None
    started = asyncio.Event()

    def released() -> bool:
        return started.is_set() and servicer.active_streams == 0

    async def run() -> tuple[grpc.aio.AioRpcError, float]:
        deaf = asyncio.ensure_future(_never_reads(impatient_server.address, released))
        while servicer.active_streams == 0:
            await asyncio.sleep(0.01)
        started.set()
        error = await deaf
        async with EmbedderClient(impatient_server.address) as client:
            after = await client.analyze_pcm("next", FORMAT, [SECOND] * 2)
        return error, after.analysis.duration_s

    error, duration = asyncio.run(run())
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    assert "SEGUE_STREAM_WRITE_TIMEOUT_S" in (error.details() or "")
    assert duration == 2.0


class _Counting(StreamModel):
    def __init__(self, model: StreamModel) -> None:
        self.spec = model.spec
        self._model = model
        self.runs = 0

    def run(self, pcm: FloatArray, state: FloatArray) -> ModelOutputs:
        self.runs += 1
        return self._model.run(pcm, state)


def test_the_batcher_runs_at_most_max_ahead_windows_ahead_of_a_stalled_caller(
    stream_model: StreamModel,
) -> None:
    model = _Counting(stream_model)
    window = model.spec.window_samples
    state = np.zeros(model.spec.state_dim, dtype=np.float32)
    pcm = np.zeros(window, dtype=np.float32)

    async def run() -> tuple[int, int]:
        batcher = Batcher(model, max_ahead=3)
        stream = batcher.stream(list(range(40)), lambda _: (pcm, state), lambda i, _: i)
        first = await anext(stream)  # then the caller stalls (e.g. blocked writing)
        await asyncio.sleep(0.5)
        stalled = model.runs
        rest = [i async for i in stream]
        await batcher.close()
        return stalled, len([first, *rest])

    stalled, delivered = asyncio.run(run())
    assert stalled <= 1 + 3 + 1, f"{stalled} model runs while the caller took one result"
    assert delivered == 40


# ---- 7. clients that trickle audio ------------------------------------------------------------

@pytest.fixture
def rate_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    server = make_embedder_server(stream_model_path, max_concurrent_streams=2,
                                  min_audio_rate=0.5, min_audio_rate_grace_s=0.5)
    yield server
    server.stop()


async def _drip() -> AsyncIterator[bytes]:
    while True:  # 4 bytes (one sample) every 0.1 s: the stream is never idle
        yield b"\x00" * 4
        await asyncio.sleep(0.1)


async def _paced(seconds: float, pause_after_s: float = 0.0,
                 pause_s: float = 0.0) -> AsyncIterator[bytes]:
    step = 2205  # 0.1 s chunks at 1x real time
    for i in range(int(seconds * 10)):
        if pause_s and i == int(pause_after_s * 10):
            await asyncio.sleep(pause_s)
        yield np.zeros(step, dtype=np.float32).tobytes()
        await asyncio.sleep(0.1)


def test_trickling_clients_lose_their_slots_to_clients_that_stream(
    rate_server: ThreadServer,
) -> None:
    servicer = rate_server.servicer
    assert servicer is not None

    async def run() -> tuple[list[grpc.aio.AioRpcError], grpc.aio.AioRpcError, float]:
        async with EmbedderClient(rate_server.address) as client:
            drips = [asyncio.ensure_future(_error(client.analyze_pcm(f"drip-{i}", FORMAT,
                                                                      _drip())))
                     for i in range(2)]
            while servicer.active_streams < 2:
                await asyncio.sleep(0.01)
            refused = await _error(client.analyze_pcm("early", FORMAT, [SECOND]))
            dripped = list(await asyncio.gather(*drips))
            good = await client.analyze_pcm("good", FORMAT, [SECOND] * 2)
            return dripped, refused, good.analysis.duration_s

    dripped, refused, duration = asyncio.run(run())
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the drips held the slots
    for error in dripped:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SEGUE_MIN_AUDIO_RATE" in (error.details() or "")
    assert duration == 2.0


def test_real_time_and_paused_then_resumed_clients_keep_their_streams(
    rate_server: ThreadServer,
) -> None:
    async def run() -> list[float]:
        async with EmbedderClient(rate_server.address) as client:
            results = await asyncio.gather(
                client.analyze_pcm("real-time", FORMAT, _paced(2.0)),
                client.analyze_pcm("paused", FORMAT, _paced(2.0, pause_after_s=1.0,
                                                            pause_s=0.6)))
            return [r.analysis.duration_s for r in results]

    assert asyncio.run(run()) == pytest.approx([2.0, 2.0])


# ---- 9. refused requests release their memory -------------------------------------------------

def test_a_refused_stream_leaves_no_state_behind_for_the_cycle_collector(
    embedder_server: ThreadServer,
) -> None:
    nan = np.zeros(22050, dtype=np.float32)
    nan[5] = math.nan

    def alive() -> int:
        return sum(1 for o in gc.get_objects()
                   if isinstance(o, SongStream) and o.song_id == "refused-late")

    gc.collect()
    gc.disable()
    try:
        [(code, _)] = statuses(embedder_server.address, [
            [config(song_id="refused-late"), chunk(np.zeros(22050 * 2)), chunk(nan)]])
        # The worker thread drops its last batch a moment after delivering it.
        for _ in range(100):
            if not (remaining := alive()):
                break
            time.sleep(0.01)
    finally:
        gc.enable()
    assert code == INVALID
    assert remaining == 0, "the refused stream's state outlived its call"


# ---- 5. non-finite model outputs never reach an analysis ----------------------------------------

class _NaNModel(StreamModel):
    def __init__(self, model: StreamModel) -> None:
        self.spec = model.spec
        self.provider = "CPUExecutionProvider"
        self._model = model

    def run(self, pcm: FloatArray, state: FloatArray) -> ModelOutputs:
        out = self._model.run(pcm, state)
        out.feel[...] = math.nan
        return out


def test_non_finite_model_outputs_end_the_stream_instead_of_returning_nan(
    stream_model_path: Path, stream_model: StreamModel,
) -> None:
    def factory() -> EmbedderServicer:
        config = EmbedderConfig(model_path=stream_model_path, execution_provider="cpu")
        return EmbedderServicer(_NaNModel(stream_model), config)

    server = embedder_thread_server(factory).start()
    try:
        [(code, details)] = statuses(server.address, [[config(), chunk(np.zeros(22050 * 2)),
                                                       END]])
    finally:
        server.stop()
    assert code == grpc.StatusCode.INTERNAL
    assert "non-finite" in details
