"""The rules of a triplet session, apart from HTTP: which page comes next, what counts as a
clip played to its end, and which answers are stored. Refusals name the field at fault."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from segue.metrics import STUDIO_ANSWERS
from segue.studio.choose import PlannedPage, PlannedRepeat, TripletChooser
from segue.studio.clips import ClipCache
from segue.studio.config import StudioConfig
from segue.studio.http import Refusal
from segue.studio.library import StudioLibrary
from segue.studio.model import Answer, Clip, Item, StudySession, Triplet
from segue.studio.prefetch import ClipPrefetcher
from segue.studio.store import AlreadyExistsError, StudioStore
from segue.studio.web_forms import now_utc

# A play counts when the wall time since the page was served covers this share of the clips
# heard so far, one after another (the page plays one clip at a time, without seeking).
PLAY_TIME_SHARE = 0.9
PLANS_KEPT = 1024
# Pages whose clips are cut ahead when a page is served: this one and the next two.
PREFETCH_PAGES = 3


class StudyFlow:
    """Pages, plays and answers of annotators' sessions over one library."""

    def __init__(self, store: StudioStore, library: StudioLibrary, clips: ClipCache,
                 config: StudioConfig, clock: Callable[[], datetime] = now_utc) -> None:
        self.store = store
        self.library = library
        self.clips = clips
        self.config = config
        self.clock = clock
        self._plans: OrderedDict[str, list[PlannedPage]] = OrderedDict()
        self._lock = threading.Lock()
        self.prefetcher = ClipPrefetcher(self._prepare)

    # ---- pages ----------------------------------------------------------------------------
    def current(self, session: StudySession) -> Item | None:
        """The page to answer now, made when first asked for; None once all are answered.
        The clips of this page and the next ones start being cut in the background."""
        items = self.store.items(session.id)
        if items and self.store.answer(items[-1].id) is None:
            return items[-1]
        if len(items) >= session.length:
            return None
        self.prefetch(session, len(items))
        triplet = self._triplet_at(session, len(items), items)
        try:
            return self.store.add_item(session.id, len(items), triplet, self.clock())
        except AlreadyExistsError:  # a second tab made it first
            return self.store.items(session.id)[len(items)]

    def prefetch(self, session: StudySession, position: int) -> None:
        """Queues the clips of pages `position` to `position + PREFETCH_PAGES - 1` for cutting
        (a repeated page's clips are its original's, cut already)."""
        pages = self.plan(session)[position : position + PREFETCH_PAGES]
        self.prefetcher.ahead(c for p in pages if isinstance(p, Triplet) for c in p.clips)

    def warm_library(self) -> int:
        """Starts cutting the library's clip grid in the background, at most
        `config.warm_clips` clips (every song's first grid start, then every second one, ...);
        returns how many were queued."""
        grid = self.config.clip_grid
        songs = [(s.song_id, s.duration_s) for s in self.library.songs]
        clips = [Clip(song_id, start_ms / 1000.0, self.config.clip_s) for song_id, start_ms
                 in itertools.islice(grid.library_clips(songs), self.config.warm_clips)]
        self.prefetcher.warm(clips)
        return len(clips)

    def _cut(self, clip: Clip) -> Path:
        return self.clips.path(clip, self.library.file(clip.song_id))

    def _prepare(self, clip: Clip) -> Path:
        return self.clips.prepare(clip, self.library.file(clip.song_id))

    def _triplet_at(self, session: StudySession, position: int, items: list[Item]) -> Triplet:
        page = self.plan(session)[position]
        if isinstance(page, PlannedRepeat):
            return page.resolve(items[page.of_position].id)
        return page

    def plan(self, session: StudySession) -> list[PlannedPage]:
        """The session's pages, the same on every call (seeded by the session id)."""
        with self._lock:
            if session.id in self._plans:
                self._plans.move_to_end(session.id)
                return self._plans[session.id]
        seed = int.from_bytes(hashlib.sha256(session.id.encode()).digest()[:8], "big")
        chooser = TripletChooser(
            list(self.library.songs), clip_s=self.config.clip_s,
            active_fraction=self.config.active_fraction, gold_every=self.config.gold_every,
            repeats=self.config.repeats, rng=np.random.default_rng(seed),
            grid=self.config.clip_grid)
        plan = chooser.session_plan(session.length)
        with self._lock:
            self._plans[session.id] = plan
            while len(self._plans) > PLANS_KEPT:
                self._plans.popitem(last=False)
        return plan

    def own_item(self, session: StudySession, item_id: str) -> Item:
        item = self.store.item(item_id)
        if item is None or item.session_id != session.id:
            raise Refusal(404, "item_id", "no such page in your session")
        return item

    def clip_file(self, session: StudySession, item_id: str, slot: int) -> Path:
        """The encoded clip `slot` of one of the session's pages."""
        return self._cut(self.own_item(session, item_id).triplet.clips[slot])

    # ---- plays and answers ----------------------------------------------------------------
    def played(self, session: StudySession, item_id: str, slot: int, listened_s: float) -> None:
        """Records that clip `slot` played to its end; 409 when that cannot be true yet."""
        item = self._open_item(session, item_id)
        clip_s = item.triplet.clips[slot].duration_s
        if listened_s < PLAY_TIME_SHARE * clip_s:
            raise Refusal(409, "listened_s", "the clip was not heard to its end: play it again")
        heard = {p.slot for p in self.store.plays(item.id)} | {slot}
        elapsed = (self.clock() - item.served_at).total_seconds()
        if elapsed < PLAY_TIME_SHARE * clip_s * len(heard):
            raise Refusal(409, "slot", "the clips were played faster than they last")
        self.store.record_play(item.id, slot, listened_s, self.clock())

    def answer(self, session: StudySession, item_id: str, pick: int) -> bool:
        """Stores the pick; True when it was the session's last page."""
        item = self._open_item(session, item_id)
        plays = {p.slot: p.listened_s for p in self.store.plays(item.id)}
        missing = [f"{'ABC'[s]}" for s in range(3) if s not in plays]
        if missing:
            raise Refusal(409, "pick", f"play every clip to its end first: {', '.join(missing)}")
        listened = (plays[0], plays[1], plays[2])
        try:
            self.store.record_answer(Answer(item.id, session.id, session.annotator_id, pick,
                                            self.clock(), listened))
        except AlreadyExistsError as e:
            raise Refusal(409, "item_id", "this page is answered already") from e
        STUDIO_ANSWERS.labels(item.triplet.kind.value).inc()
        last = item.position == session.length - 1
        if last:
            self.store.finish_session(session.id, self.clock())
        return last

    def _open_item(self, session: StudySession, item_id: str) -> Item:
        """The session's unanswered current page, or 404/409 naming item_id."""
        item = self.own_item(session, item_id)
        if self.store.answer(item.id) is not None:
            raise Refusal(409, "item_id", "this page is answered already")
        if item.id != self.store.items(session.id)[-1].id:
            raise Refusal(409, "item_id", "this is not the current page")
        return item


__all__ = ["PLAY_TIME_SHARE", "StudyFlow"]
