"""Segue Studio on real parts for tests: a real matcher holding real songs, a real database,
clips cut by ffmpeg, and the app served by uvicorn over HTTP on loopback."""

from __future__ import annotations

import argparse
import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from client_servers import matcher_server
from matcher_fixtures import free_port, make_song

from segue.audio import decode
from segue.cli.mix import RATE, playlist_style, write_mix
from segue.client.matcher import MatcherClient, make_metadata
from segue.client.security import ClientSecurity
from segue.mixing.continuous_mix import ContinuousMix, MixTrack, render_continuous_mix
from segue.mixing.style import Params
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
        self.studio.flow.prefetcher.close(wait_s=10)  # no cut outlives the test
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


# ---- the listening test (appended) ---------------------------------------------------------
@contextmanager
def served_matcher_library(folder: Path, tracks: list[Path], min_duration_s: float
                           ) -> Iterator[tuple[StudioLibrary, str]]:
    """As `matcher_library`, with the matcher kept serving at the address also yielded, for
    the listening test's NextSegment queries."""
    server = matcher_server(folder)
    try:
        asyncio.run(_fill(server.address, tracks))
        yield (asyncio.run(load_library(server.address, ClientSecurity(),
                                        min_duration_s=min_duration_s)), server.address)
    finally:
        server.stop()


# ---- the mix viewer ---------------------------------------------------------------------

# Real tracks of the packaged music (indexes into the sorted list) for the viewer's mix.
VIEWER_MIX_TRACKS = (3, 6, 14)


def render_viewer_mix(tracks: list[Path], out: Path) -> ContinuousMix:
    """Renders `tracks` as one continuous mix the way `segue mix --playlist --local` does
    (its default style, the mix engine in this process) and writes the audio at `out` with
    its .cue and .json sheets beside it (cli.mix.write_mix)."""
    args = argparse.Namespace(curve="equal-power", no_bass_swap=False, filter_sweep=False,
                              tempo_ramp_bars=0, key_shift=False, bars=None, seconds=None,
                              lufs=0.0)
    songs = [MixTrack(np.ascontiguousarray(decode(t, RATE, channels=2).T, dtype=np.float32),
                      title=t.stem.replace("_", " "), song_id=t.stem, uri=str(t))
             for t in tracks]
    mix = render_continuous_mix(songs, playlist_style(args), Params(rate_hz=RATE,
                                                                     target_lufs=-14.0))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mix(mix, out)
    return mix



class WebClient:
    """An HTTP client keeping cookies as a browser does on loopback (Secure ones included:
    browsers treat 127.0.0.1 as a secure origin; httpx's jar would drop them)."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=60)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                   **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            name, value = raw.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response

    def form_csrf(self, response: httpx.Response) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', response.text)
        assert found, "the page has no CSRF field"
        return found.group(1)

    def join(self, invite: str) -> httpx.Response:
        """Accepts the consent page of invite link `invite`: 303 when joined."""
        consent = self.request("GET", f"/join/{invite}")
        assert consent.status_code == 200
        return self.request("POST", f"/join/{invite}",
                            data={"csrf": self.form_csrf(consent), "agree": "yes"})

    def sign_in_admin(self, password: str = ADMIN_PASSWORD) -> httpx.Response:
        csrf = self.form_csrf(self.request("GET", "/admin/login"))
        return self.request("POST", "/admin/login", data={"csrf": csrf, "password": password})

    def page_data(self, path: str, name: str) -> str:
        """The `data-{name}` of page `path`; keeps the page's `data-csrf` for JSON posts."""
        page = self.request("GET", path)
        found = re.search(rf'data-{name}="([^"]+)"', page.text)
        csrf = re.search(r'data-csrf="([^"]+)"', page.text)
        assert page.status_code == 200 and found and csrf, page.text[:500]
        self.csrf = csrf.group(1)
        return found.group(1)

    def post_json(self, path: str, body: Any, csrf: str | None = None) -> httpx.Response:
        return self.request("POST", path, json=body,
                            headers={"x-csrf-token": self.csrf if csrf is None else csrf})
