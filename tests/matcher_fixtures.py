"""Synthetic and real songs, stores and in-process matcher servers for the matcher tests.

Synthetic songs are built so that the true continuation is knowable: each segment's entry
vector is the previous segment's exit vector plus a little noise, as the real model is trained
to produce. Real songs are analysed by the real model (beats, sections and cue points too).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
from matcher_qdrant_standin import QdrantStandIn
from qdrant_client import QdrantClient

from segue.audio import decode
from segue.config import ServerConfig
from segue.embedding.local import analyze_mono
from segue.embedding.model import StreamModel
from segue.server import RunningServer, start_server
from segue.v1 import common_pb2, matcher_pb2, matcher_pb2_grpc
from services.matcher.client_store import ClientStore
from services.matcher.edge_store import EdgeStore
from services.matcher.library import SongLibrary
from services.matcher.servicer import MatcherServicer, register
from services.matcher.store import SegmentStore, VectorDims

DIMS = VectorDims(feel=32, transition=64)
CAMELOT = ("8B", "9B", "7B", "8A", "3A", "11B")


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


def make_song(
    song_id: str,
    rng: np.random.Generator,
    *,
    segments: int = 6,
    segment_s: float = 8.0,
    tempo_bpm: float = 120.0,
    camelot: str = "8B",
    feel: np.ndarray | None = None,
    first_entry: np.ndarray | None = None,
    noise: float = 0.15,
    model_version: str = "test-1",
) -> common_pb2.SongAnalysis:
    """A song whose segment i+1 enters close to where segment i exits."""
    feel = unit(rng, DIMS.feel) if feel is None else feel
    entry = unit(rng, DIMS.transition) if first_entry is None else first_entry
    out = common_pb2.SongAnalysis(
        song_id=song_id,
        model_name="synthetic",
        model_version=model_version,
        duration_s=segments * segment_s,
        feel=feel.tolist(),
        tempo=common_pb2.Tempo(bpm=tempo_bpm, stability=1.0, confidence=1.0),
        key=common_pb2.Key(camelot=camelot, name=camelot, confidence=1.0),
    )
    for i in range(segments):
        exit_ = unit(rng, DIMS.transition)
        out.segments.append(
            common_pb2.Segment(
                index=i,
                start_s=i * segment_s,
                end_s=(i + 1) * segment_s,
                entry=entry.tolist(),
                exit=exit_.tolist(),
                energy=float(rng.uniform(0.2, 0.9)),
                section_letter="AB"[i % 2],
            )
        )
        nxt = exit_ + noise * rng.normal(size=DIMS.transition)
        entry = nxt / np.linalg.norm(nxt)
    return out


def make_library(count: int, seed: int = 0) -> list[common_pb2.SongAnalysis]:
    rng = np.random.default_rng(seed)
    return [
        make_song(
            f"song-{i:03d}",
            rng,
            tempo_bpm=float(rng.choice([90.0, 120.0, 124.0, 128.0, 140.0])),
            camelot=str(rng.choice(CAMELOT)),
        )
        for i in range(count)
    ]


def metadata_for(i: int) -> matcher_pb2.SongMetadata:
    return matcher_pb2.SongMetadata(
        title=f"Title {i}",
        artist=f"artist-{i % 5}",
        album=f"album-{i % 3}",
        genre=("house", "ambient", "rock")[i % 3],
        extra={"mood": ("calm", "happy")[i % 2]},
        uri=f"/music/{i}.flac",
    )


_EMPTY_EDGE: Path | None = None


def edge_store(path: Path) -> EdgeStore:
    """A new embedded store at `path`, copied from an empty one with its payload indexes
    (building the indexes takes seconds; copying the empty shard takes milliseconds)."""
    global _EMPTY_EDGE
    if _EMPTY_EDGE is None:
        root = tempfile.mkdtemp(prefix="segue-matcher-template-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        template = Path(root) / "edge"
        store = EdgeStore(template, DIMS)
        store.ensure_ready()
        store.close()
        _EMPTY_EDGE = template
    shutil.copytree(_EMPTY_EDGE, path)
    return EdgeStore(path, DIMS)


def client_store(path: Path | None = None) -> ClientStore:
    client = QdrantClient(location=":memory:") if path is None else QdrantClient(path=str(path))
    return ClientStore(client, "segue_test", DIMS)


def open_store(kind: str, tmp_path: Path) -> SegmentStore:
    return edge_store(tmp_path / "edge") if kind == "edge" else client_store()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_store(qdrant: QdrantStandIn, collection: str = "segue") -> ClientStore:
    """A store on the stand-in Qdrant server over gRPC, as the matcher reaches a real one
    (nothing answers on the URL's REST port)."""
    url = f"http://127.0.0.1:{free_port()}"
    return ClientStore.connect(url, collection, DIMS, timeout_s=1, grpc_port=qdrant.port)


def analysed_song(model: StreamModel, path: Path, song_id: str) -> common_pb2.SongAnalysis:
    """The real model's analysis of a real song file, as the embedder makes it."""
    rate = model.spec.sample_rate_hz
    return analyze_mono(model, decode(path, rate), rate, song_id)


@asynccontextmanager
async def running_matcher(
    library: SongLibrary, **servicer_kwargs: int
) -> AsyncIterator[tuple[matcher_pb2_grpc.MatcherAsyncStub, RunningServer]]:
    """A real gRPC matcher on a loopback port, and a stub connected to it."""
    config = ServerConfig(
        insecure_dev=True, service="matcher", host="127.0.0.1", grpc_port=0, shutdown_grace_s=1)
    servicer = MatcherServicer(library, **servicer_kwargs)
    server = await start_server(config, register(servicer), serve_metrics_port=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield matcher_pb2_grpc.MatcherStub(channel), server
    finally:
        await channel.close(None)
        await server.stop(0)
