"""The SDK's errors: every failed call raises the SegueError subclass of its status code, with
the gRPC error as its cause, from real servers on loopback and real bad requests."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
import pytest
from client_servers import Gateway, closed_port_address, gateway_server, matcher_server
from conftest import ThreadServer
from mixer_fixtures import MixerThreadServer
from thread_server import ThreadServer as Server

from segue.audio import encode
from segue.cli import main as segue
from segue.client import (
    CallCancelledError,
    DeadlineExceededError,
    EmbedderClient,
    Excerpt,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    MatcherClient,
    MixerClient,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SegueError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from segue.client.embedder import f32_mono_format
from services.matcher.servicer import MatcherServicer

RATE = 22050
F32 = f32_mono_format(RATE)
SECOND = np.zeros(RATE, dtype=np.float32).tobytes()

# What each status code raises, written out rather than read from segue.client.errors.
EXPECTED: dict[grpc.StatusCode, type[SegueError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    # Codes no Segue service sends raise the base class itself.
    grpc.StatusCode.UNKNOWN: SegueError,
    grpc.StatusCode.ALREADY_EXISTS: SegueError,
    grpc.StatusCode.ABORTED: SegueError,
    grpc.StatusCode.OUT_OF_RANGE: SegueError,
    grpc.StatusCode.DATA_LOSS: SegueError,
}


@pytest.fixture(scope="module")
def gateway_thread() -> Iterator[Server[Gateway]]:
    server = gateway_server()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_thread: Server[Gateway]) -> tuple[str, Gateway]:
    """The gateway's address and its settings, reset for each test."""
    assert gateway_thread.servicer is not None
    settings = gateway_thread.servicer
    settings.__init__()  # type: ignore[misc]
    return gateway_thread.address, settings


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server[MatcherServicer]]:
    server = matcher_server(tmp_path_factory.mktemp("client-errors"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_mixer() -> Iterator[MixerThreadServer]:
    server = MixerThreadServer(max_excerpt_bytes=64 * 1024).start()
    yield server
    server.stop()


C = TypeVar("C", EmbedderClient, MatcherClient, MixerClient)


def failure(client_type: type[C], address: str, call: Callable[[C], Awaitable[Any]],
            **client_kwargs: Any) -> SegueError:
    """The SegueError that `call` raises on a new client (fails the test if none is raised)."""

    async def run() -> SegueError:
        async with client_type(address, **client_kwargs) as client:
            try:
                await call(client)
            except SegueError as e:
                return e
        raise AssertionError("the call succeeded")

    return asyncio.run(run())


def get_song(address: str) -> SegueError:
    return failure(MatcherClient, address, lambda m: m.get_song("song-1"))


def analyze(address: str) -> SegueError:
    return failure(EmbedderClient, address, lambda e: e.analyze_pcm("song-1", F32, [SECOND] * 2))


def render(address: str) -> SegueError:
    pcm = Excerpt.from_array(np.zeros(RATE, dtype=np.float32), RATE)
    return failure(MixerClient, address, lambda m: m.render_transition(pcm, pcm))


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda c: c.name)
@pytest.mark.parametrize(("call", "service", "method"), [
    (get_song, "Matcher", "GetSong"),
    (analyze, "Embedder", "Analyze"),
    (render, "Mixer", "RenderTransition"),
], ids=["unary", "analyze-stream", "render-stream"])
def test_every_status_code_raises_its_own_exception_with_the_grpc_error_as_cause(
    gateway: tuple[str, Gateway], code: grpc.StatusCode,
    call: Callable[[str], SegueError], service: str, method: str,
) -> None:
    address, settings = gateway
    settings.code, settings.details = code, f"refused with {code.name}"
    error = call(address)
    assert type(error) is EXPECTED[code]
    assert error.code() == code and error.details() == f"refused with {code.name}"
    assert (error.service, error.method, error.address) == (service, method, address)
    cause = error.__cause__
    assert isinstance(cause, grpc.aio.AioRpcError) and not isinstance(cause, SegueError)
    assert cause.code() == code and cause.details() == error.details()


def test_a_song_id_that_is_not_stored_raises_not_found_error(
    matcher: Server[MatcherServicer],
) -> None:
    get = failure(MatcherClient, matcher.address, lambda m: m.get_song("no-such-song"))
    delete = failure(MatcherClient, matcher.address, lambda m: m.delete_song("no-such-song"))
    assert isinstance(get, NotFoundError) and get.method == "GetSong"
    assert isinstance(delete, NotFoundError) and delete.method == "DeleteSong"
    assert "no-such-song" in (get.details() or "")


def test_a_vector_of_the_wrong_dimension_raises_invalid_argument_error_naming_it(
    matcher: Server[MatcherServicer],
) -> None:
    error = failure(MatcherClient, matcher.address, lambda m: m.next_from_vectors([1.0, 0.0]))
    assert isinstance(error, InvalidArgumentError) and error.method == "NextSegment"
    assert "exit" in (error.details() or "")


def test_a_clip_shorter_than_one_model_window_raises_invalid_argument_error(
    embedder_server: ThreadServer,
) -> None:
    error = failure(EmbedderClient, embedder_server.address,
                    lambda e: e.embed_clip(SECOND[: RATE * 2], F32))
    assert isinstance(error, InvalidArgumentError) and error.method == "EmbedClip"
    assert "shorter than one model window" in (error.details() or "")


def test_a_stream_that_ends_without_audio_raises_failed_precondition_error(
    embedder_server: ThreadServer,
) -> None:
    error = failure(EmbedderClient, embedder_server.address,
                    lambda e: e.analyze_pcm("empty", F32, []))
    assert isinstance(error, FailedPreconditionError) and error.method == "Analyze"


def test_an_excerpt_over_the_size_limit_raises_resource_exhausted_error(
    small_mixer: MixerThreadServer,
) -> None:
    big = Excerpt.from_array(np.zeros(RATE, dtype=np.float32), RATE)  # 88 kB > 64 KiB
    error = failure(MixerClient, small_mixer.address, lambda m: m.render_transition(big, big))
    assert isinstance(error, ResourceExhaustedError) and error.method == "RenderTransition"


def test_audio_the_mixer_cannot_decode_raises_invalid_argument_error(
    small_mixer: MixerThreadServer,
) -> None:
    junk = Excerpt(b"this is not audio")
    error = failure(MixerClient, small_mixer.address, lambda m: m.render_transition(junk, junk))
    assert isinstance(error, InvalidArgumentError)


def test_a_port_nobody_serves_raises_unavailable_error_for_unary_and_streaming_calls() -> None:
    address = closed_port_address()
    for error in (get_song(address), analyze(address), render(address)):
        assert isinstance(error, UnavailableError) and error.address == address


def test_waiting_for_a_port_nobody_serves_raises_unavailable_error() -> None:
    error = failure(MatcherClient, closed_port_address(), lambda m: m.wait_ready(0.3))
    assert isinstance(error, UnavailableError) and "0.3 s" in (error.details() or "")


async def _silence_then_nothing() -> AsyncIterator[bytes]:
    yield SECOND
    await asyncio.Event().wait()  # a source that stalls


def test_a_stream_past_its_deadline_raises_deadline_exceeded_error_naming_it(
    embedder_server: ThreadServer,
) -> None:
    error = failure(EmbedderClient, embedder_server.address, lambda e: e.analyze_pcm(
        "stalled", F32, _silence_then_nothing(), timeout_s=0.5))
    assert isinstance(error, DeadlineExceededError) and error.timeout_s == 0.5
    assert str(error).endswith("(deadline 0.5 s)")


def test_a_unary_call_past_its_deadline_raises_deadline_exceeded_error(
    gateway: tuple[str, Gateway],
) -> None:
    address, settings = gateway
    settings.hang = True  # a server that never answers: the deadline, not a race, decides
    error = failure(MatcherClient, address, lambda m: m.get_song("song-1", timeout_s=0.2))
    assert isinstance(error, DeadlineExceededError) and error.timeout_s == 0.2
    assert str(error).endswith("(deadline 0.2 s)")


def test_calling_one_service_at_another_services_address_raises_unimplemented_error(
    embedder_server: ThreadServer,
) -> None:
    error = failure(MatcherClient, embedder_server.address, lambda m: m.get_song("song-1"))
    assert isinstance(error, UnimplementedError)


def test_a_stream_closed_without_an_analysis_raises_internal_error(
    gateway: tuple[str, Gateway],
) -> None:
    address, settings = gateway
    settings.empty = True
    error = analyze(address)
    assert isinstance(error, InternalError) and error.__cause__ is None
    assert "without an analysis" in (error.details() or "")


def test_a_failing_chunk_source_raises_its_own_error_unchanged(
    embedder_server: ThreadServer,
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield SECOND
        raise OSError("the microphone went away")

    async def run() -> None:
        async with EmbedderClient(embedder_server.address) as embedder:
            await embedder.analyze_pcm("broken", F32, broken())

    with pytest.raises(OSError, match="the microphone went away"):
        asyncio.run(run())


def test_segue_errors_are_still_grpc_errors_for_code_written_against_grpc(
    matcher: Server[MatcherServicer],
) -> None:
    async def run() -> grpc.StatusCode:
        async with MatcherClient(matcher.address) as client:
            try:
                await client.get_song("no-such-song")
            except grpc.aio.AioRpcError as e:
                return e.code()
        raise AssertionError("the call succeeded")

    assert asyncio.run(run()) == grpc.StatusCode.NOT_FOUND


def test_an_error_reads_as_service_rpc_address_status_and_details(
    matcher: Server[MatcherServicer],
) -> None:
    error = failure(MatcherClient, matcher.address, lambda m: m.get_song("no-such-song"))
    assert str(error) == (f"Matcher.GetSong at {matcher.address}: not_found: "
                          f"{error.details()}")
    assert error.rpc == "/segue.v1.Matcher/GetSong"


def test_an_error_keeps_its_class_and_context_through_pickling(
    matcher: Server[MatcherServicer],
) -> None:
    error = failure(MatcherClient, matcher.address, lambda m: m.get_song("no-such-song"))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is NotFoundError and str(copy) == str(error)
    assert (copy.code(), copy.timeout_s) == (grpc.StatusCode.NOT_FOUND, 30.0)


# --- the CLI recognises the errors by type and names the service and status ---


def test_the_cli_names_the_unreachable_matcher_and_the_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = closed_port_address()
    assert segue(["next", "song-1", "--matcher", address]) == 1
    assert f"segue: matcher at {address}: NextSegment failed: unavailable: " in (
        capsys.readouterr().err)


def test_segue_mix_reports_the_mixers_refusal_and_writes_no_file(
    small_mixer: MixerThreadServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = tmp_path / "a.mp3", tmp_path / "b.mp3"
    a.write_bytes(b"not audio")
    b.write_bytes(b"not audio either")
    out = tmp_path / "mix.wav"
    code = segue(["mix", str(a), str(b), "-o", str(out), "--mixer", small_mixer.address])
    assert code == 1 and not out.exists()
    assert (f"segue: mixer at {small_mixer.address}: RenderTransition failed: "
            "invalid_argument: ") in capsys.readouterr().err


def test_segue_analyze_reports_an_unreachable_embedder_for_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    files = [tmp_path / f"tone-{i}.wav" for i in range(2)]
    tone = np.sin(np.arange(RATE * 2) * 0.05).astype(np.float32)
    for path in files:
        path.write_bytes(encode(tone, RATE, "wav"))
    address = closed_port_address()
    # The exit status counts the failed files (issue 15).
    assert segue(["analyze", *map(str, files), "--embedder", address]) == 2
    err = capsys.readouterr().err
    # Each file's first call asks the replica's chunk limit, until one answers.
    assert err.count(f"embedder at {address}: ModelInfo failed: unavailable: ") == 2


def test_segue_index_stops_at_the_first_unreachable_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    tone = np.sin(np.arange(RATE * 2) * 0.05).astype(np.float32)
    for i in range(3):
        (music / f"tone-{i}.wav").write_bytes(encode(tone, RATE, "wav"))
    address = closed_port_address()
    code = segue(["index", str(music), "--embedder", address, "--matcher", address,
                  "--manifest", str(tmp_path / "manifest.json")])
    captured = capsys.readouterr()
    assert code == 1 and "stored 0, unchanged 0, failed 1" in captured.out
    assert f"embedder at {address}: ModelInfo failed: unavailable" in captured.out + captured.err


def test_segue_index_reports_an_unreachable_matcher_while_checking_unchanged_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    song = music / "tone.wav"
    song.write_bytes(encode(np.sin(np.arange(RATE) * 0.05).astype(np.float32), RATE, "wav"))
    stat = song.stat()
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"tone.wav": {
        "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": "", "song_id": "tone.wav"}}))
    address = closed_port_address()
    code = segue(["index", str(music), "--embedder", address, "--matcher", address,
                  "--manifest", str(manifest)])
    captured = capsys.readouterr()
    assert code == 1 and "stored 0, unchanged 0, failed 1" in captured.out
    assert f"matcher at {address}: GetSong failed: unavailable" in captured.out + captured.err
