"""Checkpoints keep to the token budget (SEGUE_CHECKPOINT_BYTES_PER_S): a long stream's resume
tokens grow with the song, so they come further apart instead of costing bytes that grow with
the square of its length; short songs keep the interval they asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ThreadServer, decode_song, make_embedder_server
from prometheus_client import REGISTRY
from test_embedder_stream import assert_same_analysis

from segue.client.embedder import AnalyzeResult, EmbedderClient, chunk_audio, f32_mono_format
from segue.v1.common_pb2 import SongAnalysis
from segue.v1.embedder_pb2 import Checkpoint

RATE = 22050
BUDGET = 2000.0  # token bytes per second of audio: small, so that 90 s show the growth
INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def budget_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    server = make_embedder_server(stream_model_path, checkpoint_bytes_per_s=BUDGET)
    yield server
    server.stop()


def songs_in_a_row(music_tracks: list[Path], seconds: float) -> np.ndarray:
    """Real songs one after another, cut to `seconds`."""
    parts, total = [], 0
    for path in music_tracks:
        parts.append(decode_song(path, RATE).audio)
        total += parts[-1].size
        if total >= seconds * RATE:
            break
    return np.concatenate(parts)[: int(seconds * RATE)]


def stream(address: str, audio: np.ndarray, resume_token: bytes = b"",
           interval_s: float = INTERVAL_S, keep: str = "all") -> AnalyzeResult:
    async def run() -> AnalyzeResult:
        async with EmbedderClient(address) as client:
            return await client.analyze_pcm(
                "long", f32_mono_format(RATE), chunk_audio(audio, RATE, 1.0),
                resume_token=resume_token, stream_windows=False,
                checkpoint_interval_s=interval_s,
                keep_checkpoints=keep)  # type: ignore[arg-type]

    return asyncio.run(run())


def test_each_checkpoint_waits_until_the_previous_token_fits_the_budget(
    budget_server: ThreadServer, music_tracks: list[Path],
) -> None:
    audio = songs_in_a_row(music_tracks, 90.0)
    counted = REGISTRY.get_sample_value("segue_embedder_checkpoint_bytes_total") or 0.0
    checkpoints = stream(budget_server.address, audio).checkpoints
    counted = (REGISTRY.get_sample_value("segue_embedder_checkpoint_bytes_total") or 0.0) - counted
    positions = [c.position_s for c in checkpoints]
    sizes = [len(c.resume_token) for c in checkpoints]
    gaps = np.diff(positions)
    assert all(gap >= INTERVAL_S for gap in gaps)
    assert all(gap + 1e-9 >= size / BUDGET for gap, size in zip(gaps, sizes, strict=False))
    # Tokens grow with the song, so the gaps do too: far beyond the 1 s asked for.
    assert gaps[-1] > 5 * INTERVAL_S
    # Every token but the last was paid for by the audio after it.
    assert sum(sizes) <= BUDGET * audio.size / RATE + sizes[-1]
    assert counted == sum(sizes), "operators see the token bytes (segue_embedder_checkpoint_bytes)"


def test_a_resumed_stream_spaces_its_checkpoints_from_its_token_and_finishes_the_same(
    budget_server: ThreadServer, music_tracks: list[Path],
) -> None:
    audio = songs_in_a_row(music_tracks, 90.0)
    full = stream(budget_server.address, audio)
    middle = full.checkpoints[len(full.checkpoints) // 2]
    resumed = stream(budget_server.address, audio[middle.position_frames :],
                     resume_token=middle.resume_token)
    assert_same_analysis(resumed.analysis, full.analysis)
    first = resumed.checkpoints[0]
    assert first.position_s - middle.position_s >= len(middle.resume_token) / BUDGET


def test_the_default_budget_leaves_a_three_minute_song_at_its_interval(
    embedder_server: ThreadServer, music_tracks: list[Path],
) -> None:
    audio = songs_in_a_row(music_tracks, 180.0)
    checkpoints = stream(embedder_server.address, audio, interval_s=5.0).checkpoints
    assert [c.position_s for c in checkpoints] == [5.0 * k for k in range(1, 37)]


def test_a_result_holding_megabytes_of_tokens_prints_as_a_short_summary() -> None:
    tokens = [Checkpoint(resume_token=bytes(1 << 20), position_s=5.0 * k) for k in range(1, 4)]
    result = AnalyzeResult(analysis=SongAnalysis(song_id="long", duration_s=16.0),
                           checkpoints=tokens)
    assert repr(result) == ("AnalyzeResult(song_id='long', duration_s=16, windows=0, "
                            "checkpoints=3, last_checkpoint_s=15.0)")


def test_a_client_may_keep_only_the_last_checkpoint_which_is_all_a_resume_needs(
    budget_server: ThreadServer, music_tracks: list[Path],
) -> None:
    audio = songs_in_a_row(music_tracks, 40.0)
    every = stream(budget_server.address, audio)
    last = stream(budget_server.address, audio, keep="last")
    assert len(every.checkpoints) > 1
    # Tokens are sealed afresh (nonce, expiry) each run: compare where they stand.
    assert [c.position_frames for c in last.checkpoints] == [every.checkpoints[-1].position_frames]
    with pytest.raises(ValueError, match="keep_checkpoints"):
        stream(budget_server.address, audio, keep="first")
