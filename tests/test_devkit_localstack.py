"""devkit.localstack: the services as real processes, any subset, embedder replicas sharing one
resume-token key, each replica on its own ports."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Song
from prometheus_client.parser import text_string_to_metric_families

from devkit.localstack import REPO_ROOT, Stack, running_stack
from segue.client.embedder import EmbedderClient, chunk_audio, f32_mono_format

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

MAX_SONG_S = 1234.0


def _audio_seconds(metrics: str) -> float:
    """The audio (s) one embedder has analysed, from its Prometheus endpoint."""
    text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "segue_embedder_audio_seconds":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("no segue_embedder_audio_seconds metric")


@pytest.fixture(scope="module")
def two_embedders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two embedder replicas and nothing else, with an extra setting."""
    workdir = tmp_path_factory.mktemp("localstack")
    with running_stack(workdir, services=["embedder"], replicas={"embedder": 2},
                       env={"OMP_NUM_THREADS": "1", "SEGUE_MAX_SONG_S": f"{MAX_SONG_S:g}"}
                       ) as stack:
        yield stack


def test_only_the_chosen_services_start_each_replica_on_ports_of_its_own(
        two_embedders: Stack) -> None:
    replicas = two_embedders.replicas["embedder"]
    assert set(two_embedders.replicas) == {"embedder"}
    assert set(two_embedders.grpc) == {"embedder"}
    assert len(replicas) == 2
    ports = [r.grpc for r in replicas] + [r.metrics for r in replicas]
    assert len(set(ports)) == 4
    assert two_embedders.grpc["embedder"] == replicas[0].grpc
    assert two_embedders.metrics["embedder"] == replicas[0].metrics
    assert two_embedders.target("embedder") == f"ipv4:{replicas[0].grpc},{replicas[1].grpc}"
    assert [r.log.name for r in replicas] == ["embedder-0.log", "embedder-1.log"]


def test_the_extra_environment_reaches_every_replica(two_embedders: Stack) -> None:
    async def limits() -> list[float]:
        out = []
        for replica in two_embedders.replicas["embedder"]:
            async with EmbedderClient(replica.grpc) as client:
                out.append((await client.model_info()).max_song_s)
        return out

    assert asyncio.run(limits()) == [MAX_SONG_S, MAX_SONG_S]


def test_replicas_share_a_token_key_that_is_not_the_development_one(
        two_embedders: Stack) -> None:
    from services.embedder.config import DEV_TOKEN_KEY

    assert two_embedders.token_key and two_embedders.token_key != DEV_TOKEN_KEY
    for replica in two_embedders.replicas["embedder"]:
        assert "SEGUE_TOKEN_KEY is not set" not in replica.log.read_text()


def test_a_stream_checkpointed_on_one_replica_resumes_on_the_other(
        two_embedders: Stack, song_22k: Song) -> None:
    first, second = two_embedders.replicas["embedder"]
    audio = song_22k.audio[: 12 * song_22k.rate]
    fmt = f32_mono_format(song_22k.rate)

    async def run() -> tuple[float, float]:
        async with EmbedderClient(first.grpc) as one:
            full = await one.analyze_audio("moving", audio, song_22k.rate,
                                           checkpoint_interval_s=5.0)
        checkpoint = full.checkpoints[0]
        chunks = chunk_audio(audio[checkpoint.position_frames :], song_22k.rate)
        async with EmbedderClient(second.grpc) as other:
            resumed = await other.resume("moving", fmt, checkpoint, chunks)
        return full.analysis.duration_s, resumed.analysis.duration_s

    full_s, resumed_s = asyncio.run(run())
    assert full_s == pytest.approx(12.0)
    assert resumed_s == pytest.approx(full_s)


def test_the_round_robin_target_spreads_songs_over_both_replicas(
        two_embedders: Stack, song_22k: Song) -> None:
    replicas = two_embedders.replicas["embedder"]
    before = [_audio_seconds(r.metrics) for r in replicas]
    clip = song_22k.audio[: 3 * song_22k.rate]

    async def run() -> None:
        async with EmbedderClient(two_embedders.target("embedder")) as client:
            for i in range(6):
                await client.analyze_audio(f"song-{i}", clip, song_22k.rate)

    asyncio.run(run())
    grown = [_audio_seconds(r.metrics) - b for r, b in zip(replicas, before, strict=True)]
    assert sum(grown) == pytest.approx(18.0)
    assert min(grown) >= 6.0


@pytest.mark.parametrize(("services", "replicas", "message"), [
    (("embedder", "matcher"), {"matcher": 2}, "matcher runs once"),
    (("embedder",), {"embedder": 0}, "at least one replica"),
    (("embedder",), {"mixer": 1}, "not started"),
    (("embedder", "tagger"), None, "no such services"),
])
def test_impossible_stacks_are_refused_before_anything_starts(
        tmp_path: Path, services: tuple[str, ...], replicas: dict[str, int] | None,
        message: str) -> None:
    with pytest.raises(ValueError, match=message), \
            running_stack(tmp_path, services=services, replicas=replicas):
        pass
    assert not (tmp_path / "logs").exists()


def test_services_run_from_the_given_repository_and_a_failed_start_is_reported_at_once(
        tmp_path: Path) -> None:
    assert (REPO_ROOT / "services" / "embedder" / "__main__.py").is_file()
    empty_checkout = tmp_path / "checkout"
    empty_checkout.mkdir()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited"), running_stack(
            tmp_path / "work", services=["embedder"], repo=empty_checkout,
            ready_timeout_s=60.0):
        pass
    assert time.monotonic() - started < 30.0, "waited for the deadline, not for the exit"
    log = (tmp_path / "work" / "logs" / "embedder.log").read_text()
    assert "No module named 'services'" in log, log
