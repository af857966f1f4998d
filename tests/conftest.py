"""Shared test fixtures: real music, the real Segue model, and an in-process embedder server.

Music comes from the immich-memories-music package (28 real ~31 s opus tracks), decoded with
ffmpeg through segue.audio, so tests never depend on files outside the repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

# Other engineers run tests on the same 2 cores: keep native thread pools small (OpenBLAS
# threads spin on small per-window products and starve everything else).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import thread_server
from hypothesis import settings

from segue.audio import decode
from services.embedder.servicer import EmbedderServicer

REPO = Path(__file__).resolve().parents[1]
MODEL_PATH = REPO / "models" / "segue_stream.onnx"

FloatArray = npt.NDArray[np.float32]

# CI replays the same examples on every run, so a red build names a regression rather than a
# lucky draw; developers' runs draw fresh examples and keep exploring.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def music_tracks() -> list[Path]:
    """The real songs of immich-memories-music, sorted by path."""
    from immich_memories_music import tracks_dir

    tracks = sorted(Path(tracks_dir()).rglob("*.opus"))
    assert len(tracks) >= 20, f"expected the packaged tracks under {tracks_dir()}"
    return tracks


@dataclass(frozen=True)
class Song:
    """One decoded real song: mono float32 at `rate`."""

    name: str
    audio: FloatArray
    rate: int

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.rate


_decoded: dict[tuple[Path, int], FloatArray] = {}


def decode_song(path: Path, rate: int) -> Song:
    """Decodes (once per session) a track to mono float32 at `rate`."""
    key = (path, rate)
    if key not in _decoded:
        _decoded[key] = decode(path, rate)
    return Song(path.stem, _decoded[key], rate)


@pytest.fixture(scope="session")
def song_48k(music_tracks: list[Path]) -> Song:
    """A real song at its native 48 kHz (exercises the server's resampler)."""
    return decode_song(music_tracks[0], 48000)


@pytest.fixture(scope="session")
def song_22k(music_tracks: list[Path]) -> Song:
    """Another real song at the model's native 22050 Hz."""
    return decode_song(music_tracks[len(music_tracks) // 2], 22050)


@pytest.fixture(scope="session")
def stream_model_path() -> Path:
    assert MODEL_PATH.is_file(), f"the Segue model is missing: {MODEL_PATH}"
    return MODEL_PATH


@pytest.fixture(scope="session")
def stream_model(stream_model_path: Path):  # type: ignore[no-untyped-def]
    from segue.embedding.model import StreamModel

    return StreamModel(stream_model_path, provider="cpu", intra_threads=1)


ThreadServer = thread_server.ThreadServer[EmbedderServicer]  # the embedder tests' server type


def embedder_thread_server(factory: Callable[[], EmbedderServicer],
                           grace_s: float = 5.0) -> thread_server.ThreadServer[EmbedderServicer]:
    """An embedder that drains its streams on shutdown and closes its batcher afterwards."""
    from services.embedder.__main__ import registrar

    return thread_server.ThreadServer(
        "embedder", factory, registrar, on_shutdown=lambda s: [s.drain],
        close=lambda s: s.close(), grace_s=grace_s,
    )


def make_embedder_server(model_path: Path, **overrides: object) -> ThreadServer:
    """Starts an in-process embedder on a free loopback port with config overrides."""
    from segue.embedding.model import StreamModel
    from services.embedder.config import EmbedderConfig
    from services.embedder.servicer import EmbedderServicer

    def factory() -> EmbedderServicer:
        config = EmbedderConfig(model_path=model_path, execution_provider="cpu", **overrides)  # type: ignore[arg-type]
        model = StreamModel(model_path, provider="cpu", intra_threads=1)
        return EmbedderServicer(model, config)

    return embedder_thread_server(factory).start()


@pytest.fixture(scope="session")
def embedder_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    """A shared in-process embedder (default settings, small chunk limit for the tests)."""
    server = make_embedder_server(stream_model_path, max_chunk_bytes=512 * 1024,
                                  max_concurrent_streams=64)
    yield server
    server.stop()
