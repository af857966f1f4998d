"""Shared test fixtures: real music, the real Segue model, and an in-process embedder server.

Music comes from the immich-memories-music package (28 real ~31 s opus tracks), decoded with
ffmpeg through segue.audio, so tests never depend on files outside the repository.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

# Other engineers run tests on the same 2 cores: keep native thread pools small (OpenBLAS
# threads spin on small per-window products and starve everything else).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from segue.audio import decode
from segue.server import RunningServer
from services.embedder.servicer import EmbedderServicer

REPO = Path(__file__).resolve().parents[1]
MODEL_PATH = REPO / "models" / "segue_stream.onnx"

FloatArray = npt.NDArray[np.float32]


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
    from services.embedder.model import StreamModel

    return StreamModel(stream_model_path, provider="cpu", intra_threads=1)


class ThreadServer:
    """An embedder served by its own event loop in a daemon thread, for synchronous tests."""

    def __init__(self, servicer_factory, grace_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        self._factory = servicer_factory
        self._grace_s = grace_s
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0
        self.servicer: EmbedderServicer | None = None
        self.running: RunningServer | None = None
        self._error: BaseException | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        if self._error is None:
            self._loop.run_forever()

    async def _start(self) -> None:
        from segue.config import ServerConfig
        from segue.server import start_server
        from services.embedder.__main__ import registrar

        try:
            servicer: EmbedderServicer = self._factory()
            self.servicer = servicer
            config = ServerConfig(service="embedder", host="127.0.0.1", grpc_port=0,
                                  shutdown_grace_s=self._grace_s)
            running = await start_server(
                config, registrar(servicer), on_shutdown=[servicer.drain],
                serve_metrics_port=False,
            )
            self.running = running
            self.port = running.port
        except BaseException as e:  # surfaced in start()
            self._error = e

    def start(self) -> ThreadServer:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self.running is not None and self.servicer is not None
            await self.running.stop()
            await self.servicer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def make_embedder_server(model_path: Path, **overrides: object) -> ThreadServer:
    """Starts an in-process embedder on a free loopback port with config overrides."""
    from services.embedder.config import EmbedderConfig
    from services.embedder.model import StreamModel
    from services.embedder.servicer import EmbedderServicer

    def factory() -> EmbedderServicer:
        config = EmbedderConfig(model_path=model_path, execution_provider="cpu", **overrides)  # type: ignore[arg-type]
        model = StreamModel(model_path, provider="cpu", intra_threads=1)
        return EmbedderServicer(model, config)

    return ThreadServer(factory).start()


@pytest.fixture(scope="session")
def embedder_server(stream_model_path: Path) -> Iterator[ThreadServer]:
    """A shared in-process embedder (default settings, small chunk limit for the tests)."""
    server = make_embedder_server(stream_model_path, max_chunk_bytes=512 * 1024,
                                  max_concurrent_streams=64)
    yield server
    server.stop()
