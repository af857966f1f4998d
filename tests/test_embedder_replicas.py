"""Scaling out: the SDK spreads song streams over every embedder replica its target names."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import Song, make_embedder_server

from segue.client.embedder import EmbedderClient


def test_streams_from_one_client_spread_over_every_replica_the_target_resolves_to(
        stream_model_path: Path, song_22k: Song) -> None:
    replicas = [make_embedder_server(stream_model_path) for _ in range(2)]
    clip = song_22k.audio[: 3 * song_22k.rate]
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)

    async def analyse_songs() -> list[float]:
        async with EmbedderClient(target) as client:
            results = [await client.analyze_audio(f"song-{i}", clip, song_22k.rate)
                       for i in range(6)]
        return [r.analysis.duration_s for r in results]

    try:
        durations = asyncio.run(analyse_songs())
        served = [r.servicer.streams_accepted for r in replicas if r.servicer is not None]
    finally:
        for r in replicas:
            r.stop()
    assert durations == [3.0] * 6
    # One connection, yet each replica served songs: streams are balanced per call.
    assert sum(served) == 6
    assert min(served) >= 2
