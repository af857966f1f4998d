"""Every service's front door: bearer tokens and scopes, token rotation, TLS and mutual TLS,
start-up refusals, undecodable requests, per-client stream caps, and logs that stay JSON and
keep secrets out. Real gRPC over loopback; the matcher is the real service where one is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from matcher_fixtures import edge_store, make_song
from prometheus_client import REGISTRY
from tls_certs import Authority

from segue.client.errors import PermissionDeniedError, UnauthenticatedError
from segue.client.matcher import MatcherClient
from segue.client.security import ClientSecurity, open_channel, tls_credentials
from segue.config import ServerConfig
from segue.security.tls import TlsConfigError
from segue.security.tokens import TokenFileError, parse_tokens, token_digest
from segue.server import RunningServer, start_server
from segue.v1 import matcher_pb2
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register

READER = "r" * 40
WRITER = "w" * 40
ROTATED = "n" * 40
REPO = Path(__file__).resolve().parent.parent


def _tokens(path: Path, *lines: str) -> Path:
    path.write_text("# name scopes token\n" + "\n".join(lines) + "\n")
    return path


def _config(**overrides: Any) -> ServerConfig:
    base: dict[str, Any] = {"service": "matcher", "host": "127.0.0.1", "grpc_port": 0,
                            "shutdown_grace_s": 1}
    return ServerConfig(**{**base, **overrides})


@asynccontextmanager
async def _matcher(tmp_path: Path, config: ServerConfig) -> AsyncIterator[RunningServer]:
    servicer = MatcherServicer(SongLibrary(edge_store(tmp_path / "edge")))
    server = await start_server(config, register(servicer), serve_metrics_port=False)
    try:
        yield server
    finally:
        await server.stop(0)


def _refusals(reason: str) -> float:
    value = REGISTRY.get_sample_value("segue_auth_refusals_total",
                                      {"service": "matcher", "reason": reason})
    return value or 0.0


def _client(server: RunningServer, token: str | None) -> MatcherClient:
    return MatcherClient(f"127.0.0.1:{server.port}", security=ClientSecurity(token=token))


# --- the token file ---------------------------------------------------------------------------

def test_token_file_lines_name_a_client_its_scopes_and_a_token_or_its_sha256() -> None:
    table = parse_tokens(f"reader read {READER}\n"
                         f"ops read,write sha256:{token_digest(WRITER).hex()}\n")
    assert table[token_digest(READER)].scopes == frozenset({"read"})
    assert table[token_digest(WRITER)].name == "ops"


@pytest.mark.parametrize(("text", "complaint"), [
    ("reader read short-token", "at least 32"),
    (f"reader admin {READER}", "unknown scope"),
    (f"reader read {READER}\nother write {READER}", "twice"),
    ("reader read", "expected"),
    (f"bad/name read {READER}", "client name"),
])
def test_a_bad_token_file_line_is_refused_naming_the_line(text: str, complaint: str) -> None:
    with pytest.raises(TokenFileError, match=complaint):
        parse_tokens(text)


# --- authentication and scopes on the real matcher --------------------------------------------

def test_an_unauthenticated_delete_is_refused_and_the_song_survives(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens", f"reader read {READER}", f"ops read,write {WRITER}")
    song = make_song("kept", np.random.default_rng(0))

    async def scenario() -> None:
        async with _matcher(tmp_path, _config(auth_tokens_file=str(tokens))) as server:
            async with _client(server, WRITER) as ops:
                await ops.upsert_song(song)
            missing, unknown = _refusals("missing_token"), _refusals("unknown_token")
            async with _client(server, None) as anonymous:
                with pytest.raises(UnauthenticatedError):
                    await anonymous.delete_song("kept")
            async with _client(server, "x" * 40) as forger:
                with pytest.raises(UnauthenticatedError):
                    await forger.delete_song("kept")
            async with _client(server, READER) as reader:
                with pytest.raises(PermissionDeniedError, match="scope 'write'"):
                    await reader.delete_song("kept")
                stored = await reader.get_song("kept")
            assert stored.song_id == "kept" and len(stored.segments) == len(song.segments)
            assert (_refusals("missing_token"), _refusals("unknown_token")) == (
                missing + 1, unknown + 1)

    asyncio.run(scenario())


def test_refusals_are_logged_without_the_token(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens", f"reader read {READER}")

    async def scenario() -> None:
        async with _matcher(tmp_path, _config(auth_tokens_file=str(tokens))) as server:
            with structlog.testing.capture_logs() as logs:
                async with _client(server, READER) as reader:
                    with pytest.raises(PermissionDeniedError):
                        await reader.delete_song("any")
            assert any(entry.get("reason") == "missing_scope" for entry in logs)
            assert READER not in json.dumps(logs, default=str)

    asyncio.run(scenario())


def test_tokens_rotate_by_rewriting_the_file_without_a_restart(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens", f"reader read {READER}")

    async def scenario() -> None:
        async with (_matcher(tmp_path, _config(auth_tokens_file=str(tokens))) as server,
                    _client(server, READER) as old, _client(server, ROTATED) as new):
            with pytest.raises(grpc.aio.AioRpcError) as before:
                await old.get_song("none")
            assert before.value.code() == grpc.StatusCode.NOT_FOUND  # authorised
            replacement = tmp_path / "tokens.new"
            _tokens(replacement, f"reader read {ROTATED}")
            os.replace(replacement, tokens)  # as a Secret volume swaps its files
            await asyncio.sleep(1.2)  # the file is checked at most once a second
            with pytest.raises(UnauthenticatedError):
                await old.get_song("none")
            with pytest.raises(grpc.aio.AioRpcError) as after:
                await new.get_song("none")
            assert after.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(scenario())


async def _health(port: int, token: str | None) -> grpc.StatusCode:
    async with open_channel(f"127.0.0.1:{port}", ClientSecurity(token=token)) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=5)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def test_health_needs_a_token_unless_it_is_configured_open(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens", f"reader read {READER}")

    async def scenario() -> None:
        async with _matcher(tmp_path / "a", _config(auth_tokens_file=str(tokens))) as closed:
            assert await _health(closed.port, None) == grpc.StatusCode.UNAUTHENTICATED
            assert await _health(closed.port, READER) == grpc.StatusCode.OK
        async with _matcher(tmp_path / "b", _config(auth_tokens_file=str(tokens),
                                                    open_health=True)) as open_:
            assert await _health(open_.port, None) == grpc.StatusCode.OK

    asyncio.run(scenario())


def test_a_server_without_tokens_refuses_to_start_unless_insecure_dev_is_set(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="SEGUE_INSECURE_DEV"):
            async with _matcher(tmp_path / "a", _config()):
                pass
        async with (_matcher(tmp_path / "b", _config(insecure_dev=True)) as server,
                    _client(server, None) as anyone):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await anyone.get_song("none")
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(scenario())


def test_the_embedder_refuses_to_start_with_the_development_token_key(tmp_path: Path) -> None:
    env = {**os.environ, "SEGUE_AUTH_TOKENS_FILE": str(_tokens(tmp_path / "t", f"a * {READER}")),
           "SEGUE_GRPC_PORT": "0", "SEGUE_METRICS_PORT": "0", "SEGUE_INSECURE_DEV": "0"}
    env.pop("SEGUE_TOKEN_KEY", None)
    done = subprocess.run([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "SEGUE_TOKEN_KEY is not set" in done.stderr


# --- TLS and mutual TLS -----------------------------------------------------------------------

@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca, other = Authority.create(tmp_path, "segue-ca"), Authority.create(tmp_path, "other-ca")
    clients = Authority.create(tmp_path, "clients-ca")
    return {"ca": ca, "other": other, "clients": clients,
            "server": ca.issue(tmp_path, "server", server=True),
            "client": clients.issue(tmp_path, "client", server=False),
            "stranger": other.issue(tmp_path, "stranger", server=False)}


async def _status(port: int, security: ClientSecurity) -> grpc.StatusCode:
    async with open_channel(f"127.0.0.1:{port}", security) as channel:
        stub = channel.unary_unary("/segue.v1.Matcher/GetSong",
                                   request_serializer=matcher_pb2.GetSongRequest.SerializeToString,
                                   response_deserializer=matcher_pb2.StoredSong.FromString)
        try:
            await stub(matcher_pb2.GetSongRequest(song_id="none"), timeout=5)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def test_tls_refuses_plaintext_and_clients_that_trust_another_ca(
        tmp_path: Path, pki: dict[str, Any]) -> None:
    server_pem = pki["server"]
    config = _config(insecure_dev=True, tls_cert=str(server_pem.cert), tls_key=str(server_pem.key))

    async def scenario() -> None:
        async with _matcher(tmp_path, config) as server:
            good = ClientSecurity(tls=tls_credentials(str(pki["ca"].pem.cert)))
            wrong_ca = ClientSecurity(tls=tls_credentials(str(pki["other"].pem.cert)))
            assert await _status(server.port, good) == grpc.StatusCode.NOT_FOUND  # served
            assert await _status(server.port, ClientSecurity()) == grpc.StatusCode.UNAVAILABLE
            assert await _status(server.port, wrong_ca) == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


def test_mutual_tls_rejects_clients_without_a_certificate_from_the_client_ca(
        tmp_path: Path, pki: dict[str, Any]) -> None:
    server_pem, client, stranger = pki["server"], pki["client"], pki["stranger"]
    config = _config(insecure_dev=True, tls_cert=str(server_pem.cert),
                     tls_key=str(server_pem.key), tls_client_ca=str(pki["clients"].pem.cert))
    ca = str(pki["ca"].pem.cert)

    async def scenario() -> None:
        async with _matcher(tmp_path, config) as server:
            with_cert = ClientSecurity(tls=tls_credentials(ca, str(client.cert), str(client.key)))
            no_cert = ClientSecurity(tls=tls_credentials(ca))
            foreign = ClientSecurity(tls=tls_credentials(ca, str(stranger.cert),
                                                         str(stranger.key)))
            assert await _status(server.port, with_cert) == grpc.StatusCode.NOT_FOUND
            assert await _status(server.port, no_cert) == grpc.StatusCode.UNAVAILABLE
            assert await _status(server.port, foreign) == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


def test_a_certificate_without_its_key_is_a_start_up_error_not_plaintext(
        tmp_path: Path, pki: dict[str, Any]) -> None:
    async def scenario() -> None:
        with pytest.raises(TlsConfigError, match="together"):
            async with _matcher(tmp_path, _config(insecure_dev=True,
                                                  tls_cert=str(pki["server"].cert))):
                pass

    asyncio.run(scenario())


# --- what the interceptor does for every service ----------------------------------------------

class _Probe:
    """segue.v1-named handlers that decode real request types: GetSong (unary) and RenderMix
    (a bidirectional stream that waits until released)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def get_song(self, request: matcher_pb2.GetSongRequest,
                       context: grpc.aio.ServicerContext[Any, Any]) -> matcher_pb2.StoredSong:
        return matcher_pb2.StoredSong(song_id=request.song_id)

    async def render_mix(self, requests: AsyncIterator[matcher_pb2.GetSongRequest],
                         context: grpc.aio.ServicerContext[Any, Any]
                         ) -> AsyncIterator[matcher_pb2.StoredSong]:
        async for request in requests:
            await self.release.wait()
            yield matcher_pb2.StoredSong(song_id=request.song_id)

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        decode, encode = (matcher_pb2.GetSongRequest.FromString,
                          matcher_pb2.StoredSong.SerializeToString)
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("segue.v1.Matcher", {
                "GetSong": grpc.unary_unary_rpc_method_handler(
                    self.get_song, request_deserializer=decode, response_serializer=encode)}),
            grpc.method_handlers_generic_handler("segue.v1.Mixer", {
                "RenderMix": grpc.stream_stream_rpc_method_handler(
                    self.render_mix, request_deserializer=decode, response_serializer=encode)}),
        ])
        return ["segue.v1.Matcher", "segue.v1.Mixer"]


@asynccontextmanager
async def _probe(**overrides: Any) -> AsyncIterator[tuple[_Probe, grpc.aio.Channel]]:
    probe = _Probe()
    server = await start_server(_config(insecure_dev=True, **overrides), probe.register,
                                serve_metrics_port=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield probe, channel
    finally:
        probe.release.set()
        await channel.close(None)
        await server.stop(0)


def test_undecodable_request_bytes_answer_invalid_argument_for_unary_and_streams() -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # a varint that never ends: no message parses

    async def scenario() -> None:
        async with _probe() as (probe, channel):
            probe.release.set()
            unary = channel.unary_unary("/segue.v1.Matcher/GetSong", None, None)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await unary(garbage, timeout=5)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "GetSongRequest" in (refused.value.details() or "")
            stream = channel.stream_stream("/segue.v1.Mixer/RenderMix", None, None)
            call = stream(iter([matcher_pb2.GetSongRequest(song_id="a").SerializeToString(),
                                garbage]), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for _ in call:
                    pass
            assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert await unary(matcher_pb2.GetSongRequest(song_id="ok").SerializeToString(),
                               timeout=5)  # the server still serves

    asyncio.run(scenario())


def test_one_client_cannot_hold_more_streams_than_its_cap() -> None:
    async def scenario() -> None:
        async with _probe(max_streams_per_client=2) as (probe, channel):
            stream = channel.stream_stream(
                "/segue.v1.Mixer/RenderMix",
                request_serializer=matcher_pb2.GetSongRequest.SerializeToString,
                response_deserializer=matcher_pb2.StoredSong.FromString)
            held = [stream(None, timeout=10) for _ in range(2)]
            for call in held:
                await call.write(matcher_pb2.GetSongRequest(song_id="held"))
            await asyncio.sleep(0.3)
            extra = stream(iter([matcher_pb2.GetSongRequest(song_id="extra")]), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in extra:
                    pass
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "SEGUE_MAX_STREAMS_PER_CLIENT" in (refused.value.details() or "")
            probe.release.set()
            for call in held:
                await call.done_writing()
                assert [r.song_id async for r in call] == ["held"]
            again = stream(iter([matcher_pb2.GetSongRequest(song_id="again")]), timeout=5)
            assert [r.song_id async for r in again] == ["again"]  # slots were given back

    asyncio.run(scenario())


# --- logs -------------------------------------------------------------------------------------

def test_library_log_lines_are_json_and_urls_lose_their_credentials() -> None:
    script = (
        "import logging\n"
        "from segue.log import configure_logging, get_logger\n"
        "configure_logging('info', 'json')\n"
        "logging.getLogger('grpc').error('failed for http://admin:hunter2@qdrant:6333')\n"
        "get_logger('x').info('store', url='https://qdrant:6333/?api_key=hunter2')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines[0]["event"].startswith("failed for http://***@qdrant")
    assert lines[1]["url"] == "https://qdrant:6333/?api_key=***"
    assert "hunter2" not in done.stderr


def test_sdk_takes_its_token_from_the_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _tokens(tmp_path / "tokens", f"reader read {READER}")
    token_file = tmp_path / "my-token"
    token_file.write_text(READER + "\n")
    monkeypatch.delenv("SEGUE_TOKEN", raising=False)
    monkeypatch.setenv("SEGUE_TOKEN_FILE", str(token_file))

    async def scenario() -> None:
        async with (_matcher(tmp_path, _config(auth_tokens_file=str(tokens))) as server,
                    MatcherClient(f"127.0.0.1:{server.port}") as client):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await client.get_song("none")
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated

    asyncio.run(scenario())


def test_client_tokens_reach_streaming_calls_as_well_as_unary_ones(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens", f"renderer render,read {READER}")

    async def answers(port: int, token: str | None) -> list[str] | grpc.StatusCode:
        async with open_channel(f"127.0.0.1:{port}", ClientSecurity(token=token)) as ch:
            stream = ch.stream_stream(
                "/segue.v1.Mixer/RenderMix",
                request_serializer=matcher_pb2.GetSongRequest.SerializeToString,
                response_deserializer=matcher_pb2.StoredSong.FromString)
            call = stream(iter([matcher_pb2.GetSongRequest(song_id="s")]), timeout=5)
            try:
                return [r.song_id async for r in call]
            except grpc.aio.AioRpcError as e:
                return e.code()

    async def scenario() -> None:
        probe = _Probe()
        probe.release.set()
        server = await start_server(_config(auth_tokens_file=str(tokens)), probe.register,
                                    serve_metrics_port=False)
        try:
            assert await answers(server.port, READER) == ["s"]
            assert await answers(server.port, None) == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop(0)

    asyncio.run(scenario())
