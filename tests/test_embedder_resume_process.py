"""A stream resumed from its checkpoint on a fresh server process gives the same analysis."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Song, ThreadServer
from test_embedder_stream import assert_same_analysis, random_chunks

from segue.client.embedder import AnalyzeResult, EmbedderClient, f32_mono_format

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def embedder_process(stream_model_path: Path) -> Iterator[str]:
    """`python -m services.embedder` on a free port, as deployed."""
    port = _free_port()
    env = {**os.environ, "SEGUE_GRPC_HOST": "127.0.0.1", "SEGUE_GRPC_PORT": str(port),
           "SEGUE_METRICS_PORT": "0", "SEGUE_MODEL_PATH": str(stream_model_path),
           "SEGUE_EXECUTION_PROVIDER": "cpu", "OMP_NUM_THREADS": "1",
           "SEGUE_INSECURE_DEV": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert b'"stopped"' in stderr, "SIGTERM shuts the service down gracefully"


def test_resuming_on_a_fresh_server_process_gives_the_uninterrupted_analysis(
    embedder_server: ThreadServer, embedder_process: str, song_48k: Song,
) -> None:
    audio = song_48k.audio

    async def run() -> tuple[AnalyzeResult, AnalyzeResult]:
        async with EmbedderClient(embedder_server.address) as first:
            full = await first.analyze_pcm("moving", f32_mono_format(48000),
                                           random_chunks(audio, seed=21))
        checkpoint = full.checkpoints[3]
        async with EmbedderClient(embedder_process) as second:
            await second.wait_ready(30)
            resumed = await second.resume(
                "moving", f32_mono_format(48000), checkpoint,
                random_chunks(audio[checkpoint.position_frames :], seed=22))
        return full, resumed

    full, resumed = asyncio.run(run())
    assert_same_analysis(resumed.analysis, full.analysis)
