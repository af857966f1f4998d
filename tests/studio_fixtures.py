"""Segue Studio on real parts for tests: a real matcher holding real songs, a real database,
clips cut by ffmpeg, and the app served by uvicorn over HTTP on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import uvicorn
from client_servers import matcher_server
from matcher_fixtures import free_port, make_song

from segue.client.matcher import MatcherClient, make_metadata
from segue.client.security import ClientSecurity
from segue.studio.access import AdminPassword, digest, new_token
from segue.studio.app import Studio, create_app
from segue.studio.clips import ClipCache
from segue.studio.config import StudioConfig
from segue.studio.library import StudioLibrary, load_library
from segue.studio.sql_store import SqlStore
from segue.studio.store import StudioStore
from segue.studio.study import StudyFlow

ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class Clock:
    """Time the study flow sees; tests move it instead of sleeping through clips."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _fill(address: str, tracks: list[Path]) -> None:
    rng = np.random.default_rng(7)
    async with MatcherClient(address) as client:
        for i, track in enumerate(tracks):
            song = make_song(f"track-{i:02d}", rng, segments=4, segment_s=7.0)
            await client.upsert_song(song, make_metadata(title=track.stem, uri=str(track)))


@contextmanager
def matcher_library(folder: Path, tracks: list[Path], min_duration_s: float
                    ) -> Iterator[StudioLibrary]:
    """A real matcher holding `tracks` (28 s analyses, uri = the real file), read as the
    Studio reads it."""
    server = matcher_server(folder)
    try:
        asyncio.run(_fill(server.address, tracks))
        yield asyncio.run(load_library(server.address, ClientSecurity(),
                                       min_duration_s=min_duration_s))
    finally:
        server.stop()


def studio_config(folder: Path, **overrides: object) -> StudioConfig:
    values: dict[str, object] = {"data_dir": folder, "clip_s": 0.6, "short_clips": True,
                                 "session_length": 15, "gold_every": 5, "repeats": 2}
    values.update(overrides)
    return StudioConfig(**values)  # type: ignore[arg-type]


def make_studio(config: StudioConfig, library: StudioLibrary, clock: Clock | None = None,
                password: str | None = ADMIN_PASSWORD) -> Studio:
    store = SqlStore.open(config.database_url)
    flow = StudyFlow(store, library, ClipCache(config.clip_cache_dir), config,
                     **({"clock": clock} if clock else {}))
    return Studio(config, store, flow, AdminPassword(password))


def add_invite(studio: Studio, *, uses: int = 5, days: float = 1.0) -> str:
    """A new invite's token (what its link carries)."""
    token, now = new_token(), datetime.now(UTC)
    studio.store.create_invite("test", digest(token), now + timedelta(days=days), uses, now)
    return token


class LiveStudio:
    """The app served by uvicorn from a thread on a free loopback port."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(studio), host="127.0.0.1", port=self.port, log_config=None,
            lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveStudio:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("the Studio did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.studio.store.close()


def careful_pick(store: StudioStore, item_id: str) -> int:
    """What an attentive annotator picks: the known odd clip of a gold set, the same song as
    before on a repeated set, and otherwise the clip the model would pick (or clip A)."""
    item = store.item(item_id)
    assert item is not None
    triplet = item.triplet
    if triplet.expected_odd is not None:
        return triplet.expected_odd
    if triplet.repeat_of is not None:
        first = store.answer(triplet.repeat_of)
        original = store.item(triplet.repeat_of)
        assert first is not None and original is not None
        song = original.triplet.clips[first.pick].song_id
        return [c.song_id for c in triplet.clips].index(song)
    return triplet.model_odd or 0


def careless_pick(store: StudioStore, item_id: str) -> int:
    """Someone clicking without listening: never the gold set's odd clip."""
    item = store.item(item_id)
    assert item is not None
    expected = item.triplet.expected_odd
    return 0 if expected is None else (expected + 1) % 3
