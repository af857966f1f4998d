"""Every RPC, fuzzed: whatever a client sends, the answer is a documented status, in time, and
the good requests served beside the fuzzing keep their exact answers.

The three services run in-process on loopback (insecure development mode), the mixer taking
stored analyses from the matcher. Requests come from tests/fuzz_strategies.py: generic
messages built from each request's descriptor, near-valid requests (a real song's valid
request with one change) and raw wire bytes. Hypothesis runs derandomized (the same examples
on every run) with no example database, so a failure reproduces exactly; bench/bench_fuzz.py
runs the same strategies for far longer against real service processes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from client_servers import matcher_server
from conftest import decode_song, make_embedder_server
from fuzz_strategies import (
    BY_NAME,
    DOCUMENTED,
    NEVER,
    RPCS,
    UNPARSEABLE,
    Call,
    Material,
    Rpc,
    Witness,
    calls,
    message_call,
    one_field_changed,
    problems,
    seed_analyses,
    send,
    valid_requests,
)
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from mixer_fixtures import MixerThreadServer
from thread_server import ThreadServer

from segue.v1 import common_pb2, matcher_pb2

RATE_HZ = 22050
# The real clip the valid requests are made of: 8 s of an electronic song (steady beats).
TRACK = "happy_electronic_1"
CLIP_START_S, CLIP_S = 10.0, 8.0
SEEDED_SONGS = 4
# Far above any RPC's own time on these small requests: an answer this late is a hang.
DEADLINE_S = {"Embedder": 30.0, "Matcher": 30.0, "Mixer": 60.0}
# Examples per RPC: renders of the real clip take up to a second, everything else milliseconds.
EXAMPLES = {"Embedder": 150, "Matcher": 100, "Mixer": 60}
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass
class Stack:
    """The three services in-process, a channel to each, and the fuzzing's material."""

    servers: dict[str, ThreadServer[Any]]
    channels: dict[str, grpc.Channel]
    material: Material
    witness: Witness


def _material_track(music_tracks: list[Path]) -> Path:
    return next(p for p in music_tracks if p.stem == TRACK)


def _seed_matcher(channel: grpc.Channel, analysis: common_pb2.SongAnalysis) -> tuple[str, ...]:
    """Stores the songs near-valid requests name (again: fuzzed DeleteSongs remove them)."""
    upsert = channel.unary_unary("/segue.v1.Matcher/UpsertSong",
                                 request_serializer=matcher_pb2.UpsertSongRequest.SerializeToString,
                                 response_deserializer=matcher_pb2.UpsertSongResponse.FromString)
    ids = []
    for song in seed_analyses(analysis, SEEDED_SONGS):
        upsert(matcher_pb2.UpsertSongRequest(analysis=song), timeout=30)
        ids.append(song.song_id)
    return tuple(ids)


@pytest.fixture(scope="module")
def stack(music_tracks: list[Path], stream_model_path: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    embedder = make_embedder_server(stream_model_path, max_chunk_bytes=512 * 1024,
                                    max_concurrent_streams=16)
    matcher = matcher_server(tmp_path_factory.mktemp("fuzz-matcher"))
    mixer = MixerThreadServer(matcher_addr=matcher.address, max_concurrent=2).start()
    servers: dict[str, ThreadServer[Any]] = {
        "Embedder": embedder, "Matcher": matcher, "Mixer": mixer}
    channels = {name: grpc.insecure_channel(s.address, options=MESSAGE_OPTIONS)
                for name, s in servers.items()}
    track = _material_track(music_tracks)
    song = decode_song(track, RATE_HZ)
    clip = song.audio[int(CLIP_START_S * RATE_HZ):int((CLIP_START_S + CLIP_S) * RATE_HZ)]
    witness = Witness(channels, clip, RATE_HZ)
    try:
        witness.take_reference()
        ids = _seed_matcher(channels["Matcher"], witness.analysis)
        material = Material(clip, RATE_HZ, witness.analysis, track.read_bytes(), ids,
                            witness.resume_token, witness.song_id)
        yield Stack(servers, channels, material, witness)
    finally:
        for channel in channels.values():
            channel.close()
        for server in servers.values():
            server.stop()


class Beside:
    """Runs the witness's good requests in a loop on another thread while a test fuzzes."""

    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.rounds = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.witness.check()
            self.rounds += 1

    def __enter__(self) -> Beside:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(300)


def fuzz(stack: Stack, rpc: Rpc, examples: int) -> Counter[str]:
    """Sends `examples` generated requests of `rpc`; every answer must be documented.
    Returns how many of each kind got each status."""
    channel, deadline_s = stack.channels[rpc.service], DEADLINE_S[rpc.service]
    tally: Counter[str] = Counter()

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(calls(rpc, stack.material))
    def answered_as_documented(call: Call) -> None:
        outcome = send(channel, call, deadline_s)
        tally[f"{call.kind} {outcome.code.name}"] += 1
        assert problems(call, outcome) == [], outcome.details

    answered_as_documented()
    return tally


@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: rpc.name)
def test_every_request_gets_a_documented_status_in_time_beside_good_requests(
    stack: Stack, rpc: Rpc
) -> None:
    if rpc.service == "Matcher":
        _seed_matcher(stack.channels["Matcher"], stack.material.analysis)
    before = len(stack.witness.mismatches)
    with Beside(stack.witness) as beside:
        tally = fuzz(stack, rpc, EXAMPLES[rpc.service])
    answered_ok = sum(n for key, n in tally.items() if key.endswith(" OK"))
    assert answered_ok >= 1, f"some requests get past every check to the work itself: {tally}"
    assert beside.rounds >= 1, "the good requests ran at least once beside the fuzzing"
    assert stack.witness.mismatches[before:] == [], "good requests kept their exact answers"


@pytest.mark.parametrize("blob", UNPARSEABLE, ids=lambda b: b.hex())
@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: rpc.name)
def test_bytes_that_are_no_request_message_are_invalid_argument(
    stack: Stack, rpc: Rpc, blob: bytes
) -> None:
    outcome = send(stack.channels[rpc.service], Call(rpc, "wire", (blob,)),
                   DEADLINE_S[rpc.service])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, (outcome.code, outcome.details)


def _stored(channel: grpc.Channel, song_id: str) -> bytes | str:
    """GetSong's answer (with vectors) as bytes, or its status name when refused."""
    outcome = send(channel, Call(BY_NAME["Matcher.GetSong"], "probe", (
        matcher_pb2.GetSongRequest(song_id=song_id, with_vectors=True).SerializeToString(),)),
        DEADLINE_S["Matcher"])
    return outcome.responses[0] if outcome.code == grpc.StatusCode.OK else outcome.code.name


def test_an_upsert_the_matcher_refuses_changes_nothing(stack: Stack) -> None:
    channel = stack.channels["Matcher"]
    base = valid_requests(BY_NAME["Matcher.UpsertSong"], stack.material)[0]
    assert isinstance(base, matcher_pb2.UpsertSongRequest)
    base.analysis.song_id = stack.material.stored_ids[0]

    @settings(max_examples=EXAMPLES["Matcher"], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(one_field_changed(base, stack.material))
    def refused_changes_nothing(request: Message) -> None:
        assert isinstance(request, matcher_pb2.UpsertSongRequest)
        song_id = request.analysis.song_id
        before = _stored(channel, song_id)
        upsert = message_call(BY_NAME["Matcher.UpsertSong"], "near-valid", [request])
        outcome = send(channel, upsert, DEADLINE_S["Matcher"])
        if outcome.code != grpc.StatusCode.OK:
            assert _stored(channel, song_id) == before, outcome.details

    _seed_matcher(channel, stack.material.analysis)
    refused_changes_nothing()


def test_the_oracle_never_allows_unknown_or_internal() -> None:
    assert all(not (codes & NEVER) for codes in DOCUMENTED.values())
    assert set(DOCUMENTED) == {rpc.name for rpc in RPCS}


def test_the_good_requests_answer_the_same_after_all_the_fuzzing(stack: Stack) -> None:
    assert stack.witness.check() == []
