"""The blind transition listening test, apart from HTTP: which transitions a page compares,
rendering them (once each, cached on disk as Ogg/Opus), the must-play rule and answers.

Each page leaves one library song at the exit the matcher's NextSegment settles on, and
compares two of three conditions (`Condition`):

- segue: the matcher's best next segment (the first candidate of another song that has
  `excerpt_s` seconds after its entry), rendered by Segue's mixer (`segue.mixing`, in process);
- crossfade: the same pair as a plain linear crossfade with no beat matching, tempo change,
  EQ or loudness match: the same output length, A from the same point, B entering at the same
  point of B and at the same moment, both overlapping exactly as long as in the segue render;
- random: a song drawn uniformly from the rest of the library, entered at a uniform point,
  rendered by Segue's mixer.

Every output is levelled to the clips' loudness and faded at its ends (`clips.level`,
`clips.fade`), so no condition stands out by level alone. Pages cycle through the three
pairings (segue-crossfade, segue-random, crossfade-random) from an offset drawn per annotator,
and each page draws which side is A; both draws are seeded by the annotator id and position,
so a reload shows the same page. Rendering that fails is refused (503 naming "transition")
after `SOURCE_TRIES` source songs; nothing is stored for a page that could not be rendered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from segue.client.errors import SegueError
from segue.client.matcher import MatcherClient
from segue.client.security import ClientSecurity
from segue.files import write_atomically
from segue.studio.clips import RATE_HZ, ClipError, ClipSettings, cut, encode_opus, fade, level
from segue.studio.config import StudioConfig
from segue.studio.http import Refusal
from segue.studio.library import StudioLibrary
from segue.studio.listening_model import (
    MAX_RATING,
    MIN_RATING,
    Condition,
    ListeningAnswer,
    ListeningPage,
    SeamRating,
    Transition,
)
from segue.studio.store import AlreadyExistsError, StudioStore
from segue.studio.web_forms import now_utc

log = logging.getLogger("segue.studio.listening")

FloatArray = npt.NDArray[np.float32]

# The page's must-play rule is the triplet page's (see study.py).
PLAY_TIME_SHARE = 0.9
# The pairings pages cycle through, each condition in two of the three.
PAIRINGS: tuple[tuple[Condition, Condition], ...] = (
    (Condition.SEGUE, Condition.CROSSFADE),
    (Condition.SEGUE, Condition.RANDOM),
    (Condition.CROSSFADE, Condition.RANDOM),
)
# Source songs tried for one page before the page is refused.
SOURCE_TRIES = 3
MATCHER_CANDIDATES = 10
MATCHER_TIMEOUT_S = 10.0
MAX_MIX_ID_CHARS = 128


class RenderError(RuntimeError):
    """A transition could not be rendered; the message says why."""


@dataclass(frozen=True)
class ListeningSettings:
    """How the listening test runs.

    pages: comparisons per annotator. excerpt_s: seconds of each song around the transition
    (A up to its exit, B from its entry). overlap_s: the mixer's overlap length (None: its
    automatic length). context_s: output before and after the overlap.
    """

    pages: int = 6
    excerpt_s: float = 16.0
    overlap_s: float | None = None
    context_s: float = 4.0

    @classmethod
    def for_config(cls, config: StudioConfig) -> ListeningSettings:
        """The defaults, or short transitions (about 4 s) where the config allows short clips
        (SEGUE_STUDIO_SHORT_CLIPS, for tests)."""
        if config.short_clips:
            return cls(pages=3, excerpt_s=5.0, overlap_s=1.5, context_s=1.0)
        return cls()


@dataclass(frozen=True)
class TransitionSpec:
    """What to render: leaving `from_song` at `exit_s` into `to_song` at `entry_s`."""

    condition: Condition
    from_song: str
    exit_s: float
    to_song: str
    entry_s: float

    @classmethod
    def of(cls, transition: Transition) -> TransitionSpec:
        return cls(transition.condition, transition.from_song, transition.exit_s,
                   transition.to_song, transition.entry_s)

    def rendered(self, duration_s: float) -> Transition:
        return Transition(self.condition, self.from_song, self.exit_s, self.to_song,
                          self.entry_s, duration_s)


# ---- choosing the next segment ---------------------------------------------------------------
class NextSegments(Protocol):
    """Where a song is left and the candidates to enter next, best first."""

    def __call__(self, song_id: str, time_s: float) -> tuple[float, list[tuple[str, float]]]:
        ...


@dataclass(frozen=True)
class MatcherNextSegments:
    """NextSegment of the matcher at `address`: (exit time, [(song id, entry time)])."""

    address: str
    security: ClientSecurity

    def __call__(self, song_id: str, time_s: float) -> tuple[float, list[tuple[str, float]]]:
        return asyncio.run(self._ask(song_id, time_s))

    async def _ask(self, song_id: str, time_s: float) -> tuple[float, list[tuple[str, float]]]:
        async with MatcherClient(self.address, security=self.security) as client:
            found = await client.next_segment(song_id, time_s=time_s, k=MATCHER_CANDIDATES,
                                              timeout_s=MATCHER_TIMEOUT_S)
        return found.exit_time_s, [(c.song_id, c.entry_time_s) for c in found.candidates]


# ---- rendering -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    """Where a Segue render put things, in output seconds (A's and B's own times for the
    origins): what the crossfade of the same pair copies."""

    duration_s: float
    overlap_start_s: float
    overlap_end_s: float
    a_origin_s: float
    b_start_s: float


class TransitionRenderer:
    """Renders transitions between library songs into `folder`, once per (pair, condition).

    A transition's file is named by a hash of the spec, the sources (path, size, modification
    time) and the settings; a JSON file beside it keeps its length and geometry. Renders run
    one at a time (they are CPU-bound), each written atomically.
    """

    def __init__(self, folder: Path, library: StudioLibrary, settings: ListeningSettings,
                 clip_settings: ClipSettings | None = None) -> None:
        self.folder = folder
        self.library = library
        self.settings = settings
        self.clip_settings = clip_settings or ClipSettings()
        self._lock = threading.Lock()

    def render(self, spec: TransitionSpec) -> tuple[Path, float]:
        """The Ogg/Opus file of the transition and its length (s), rendered when missing.

        Raises RenderError naming why a transition cannot be rendered.
        """
        audio, meta = self._paths(spec)
        with self._lock:
            if not (audio.is_file() and meta.is_file()):
                self._render(spec, audio, meta)
        return audio, self._geometry(meta).duration_s

    def _paths(self, spec: TransitionSpec) -> tuple[Path, Path]:
        fields: dict[str, object] = {
            "condition": spec.condition.value, "exit_s": spec.exit_s, "entry_s": spec.entry_s,
            "from": self._source_key(spec.from_song), "to": self._source_key(spec.to_song),
            "settings": [self.settings.excerpt_s, self.settings.overlap_s,
                         self.settings.context_s, self.clip_settings.bitrate_kbps,
                         self.clip_settings.target_lufs, self.clip_settings.fade_s, RATE_HZ],
        }
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:40]
        return self.folder / f"{key}.opus", self.folder / f"{key}.json"

    def _source_key(self, song_id: str) -> list[object]:
        try:
            path = self.library.file(song_id).resolve()
            stat = path.stat()
        except KeyError:
            raise RenderError(f"song {song_id} is not in the Studio's library") from None
        except OSError as e:
            raise RenderError(f"cannot read the audio of song {song_id}: {e.strerror}") from None
        return [str(path), stat.st_size, stat.st_mtime_ns]

    @staticmethod
    def _geometry(meta: Path) -> _Geometry:
        return _Geometry(**json.loads(meta.read_text(encoding="utf-8")))

    def _render(self, spec: TransitionSpec, audio: Path, meta: Path) -> None:
        try:
            a, b = self._excerpts(spec)
            if spec.condition is Condition.CROSSFADE:
                pcm, geometry = self._crossfade(spec, a, b)
            else:
                pcm, geometry = self._segue(a, b)
            levelled = fade(level(pcm, self.clip_settings.target_lufs),
                            self.clip_settings.fade_s)
            encoded = encode_opus(levelled, self.clip_settings.bitrate_kbps)
        except RenderError:
            raise
        except (ClipError, ValueError, ArithmeticError, OSError) as e:  # MixInputError too
            raise RenderError(f"the {spec.condition.value} transition from {spec.from_song} "
                              f"into {spec.to_song} could not be rendered: {e}") from e
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(audio, encoded)
        write_atomically(meta, json.dumps(geometry.__dict__))

    def _excerpts(self, spec: TransitionSpec) -> tuple[FloatArray, FloatArray]:
        """A's last `excerpt_s` seconds before the exit and B's first after the entry, as
        float32 [frames, 2] at 48 kHz."""
        excerpt_s = self.settings.excerpt_s
        start = max(0.0, spec.exit_s - excerpt_s)
        if spec.exit_s - start < 1.0:
            raise RenderError(f"song {spec.from_song} is left at {spec.exit_s:.2f} s: too "
                              "early for a transition")
        a = cut(self.library.file(spec.from_song), start, spec.exit_s - start)
        b = cut(self.library.file(spec.to_song), spec.entry_s, excerpt_s)
        return a, b

    def _segue(self, a: FloatArray, b: FloatArray) -> tuple[FloatArray, _Geometry]:
        from segue.mixing.excerpt import Excerpt
        from segue.mixing.render import render_transition
        from segue.mixing.style import Params, Style
        from segue.v1 import mixer_pb2

        info = mixer_pb2.ExcerptInfo(encoded=True)
        overlap_s = self.settings.overlap_s
        style = Style("auto") if overlap_s is None else Style("seconds", seconds=overlap_s)
        rendered = render_transition(
            Excerpt("outgoing", np.ascontiguousarray(a.T), RATE_HZ, info),
            Excerpt("incoming", np.ascontiguousarray(b.T), RATE_HZ, info),
            style, Params(rate_hz=RATE_HZ, context_s=self.settings.context_s))
        pcm: FloatArray = np.ascontiguousarray(rendered.audio.T, dtype=np.float32)
        return pcm, _Geometry(pcm.shape[0] / RATE_HZ, rendered.overlap_start_s,
                              rendered.overlap_end_s, rendered.a_origin_s, rendered.b_start_s)

    def _crossfade(self, spec: TransitionSpec, a: FloatArray, b: FloatArray
                   ) -> tuple[FloatArray, _Geometry]:
        """The segue render's pair and lengths, as a plain linear crossfade."""
        _, segue_meta = self._paths(replace(spec, condition=Condition.SEGUE))
        if not segue_meta.is_file():
            self._render(replace(spec, condition=Condition.SEGUE), *self._paths(
                replace(spec, condition=Condition.SEGUE)))
        geometry = self._geometry(segue_meta)
        return linear_crossfade(a, b, geometry.duration_s, geometry.overlap_start_s,
                                geometry.overlap_end_s, geometry.a_origin_s,
                                geometry.b_start_s), geometry


def _frames(seconds: float) -> int:
    return max(0, round(seconds * RATE_HZ))


def _take(pcm: FloatArray, start: int, frames: int) -> FloatArray:
    """`frames` frames of `pcm` from `start`, zero-padded past its end."""
    out = np.zeros((frames, pcm.shape[1]), dtype=np.float32)
    piece = pcm[start:start + frames]
    out[:piece.shape[0]] = piece
    return out


def linear_crossfade(a: FloatArray, b: FloatArray, duration_s: float, overlap_start_s: float,
                     overlap_end_s: float, a_origin_s: float, b_start_s: float) -> FloatArray:
    """`duration_s` seconds ([frames, 2] at 48 kHz): A from `a_origin_s` fading out linearly
    over [overlap_start_s, overlap_end_s] (output time), B from `b_start_s` fading in over the
    same span; neither is stretched, filtered or levelled."""
    total, s0 = _frames(duration_s), _frames(overlap_start_s)
    s1 = min(max(_frames(overlap_end_s), s0), total)
    s0 = min(s0, s1)
    out = np.zeros((total, a.shape[1]), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, s1 - s0, dtype=np.float32)[:, None]
    a_part = _take(a, _frames(a_origin_s), s1)
    a_part[s0:s1] *= ramp[::-1]
    out[:s1] += a_part
    b_part = _take(b, _frames(b_start_s), total - s0)
    b_part[:s1 - s0] *= ramp
    out[s0:] += b_part
    return out


# ---- the flow --------------------------------------------------------------------------------
def _seed(*parts: object) -> int:
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class ListeningFlow:
    """Pages, plays and answers of annotators' listening tests over one library."""

    def __init__(self, store: StudioStore, library: StudioLibrary,
                 renderer: TransitionRenderer, next_segments: NextSegments,
                 settings: ListeningSettings, clock: Callable[[], datetime] = now_utc) -> None:
        self.store = store
        self.library = library
        self.renderer = renderer
        self.next_segments = next_segments
        self.settings = settings
        self.clock = clock

    # ---- pages ----------------------------------------------------------------------------
    def current(self, annotator_id: str) -> ListeningPage | None:
        """The page to answer now, made when first asked for; None once all are answered.

        Raises Refusal(503, "transition") when no page could be rendered.
        """
        pages = self.store.listening_pages(annotator_id)
        if pages and self.store.listening_answer(pages[-1].id) is None:
            return pages[-1]
        if len(pages) >= self.settings.pages:
            return None
        sides = self.plan(annotator_id, len(pages))
        try:
            return self.store.add_listening_page(annotator_id, len(pages), sides, self.clock())
        except AlreadyExistsError:  # a second tab made it first
            return self.store.listening_pages(annotator_id)[len(pages)]

    def progress(self, annotator_id: str) -> int:
        return len(self.store.listening_pages(annotator_id))

    def pairing(self, annotator_id: str, position: int) -> tuple[Condition, Condition]:
        """The conditions of page `position`, in A-B order."""
        offset = _seed(annotator_id, "pairings") % len(PAIRINGS)
        first, second = PAIRINGS[(position + offset) % len(PAIRINGS)]
        swap = _seed(annotator_id, position, "sides") % 2 == 1
        return (second, first) if swap else (first, second)

    def plan(self, annotator_id: str, position: int) -> tuple[Transition, Transition]:
        """Both sides of page `position`, rendered; tries SOURCE_TRIES source songs."""
        conditions = self.pairing(annotator_id, position)
        rng = np.random.default_rng(_seed(annotator_id, position, "songs"))
        reasons: list[str] = []
        for _ in range(SOURCE_TRIES):
            try:
                specs = self._specs(rng, conditions)
                rendered = [spec.rendered(self.renderer.render(spec)[1]) for spec in specs]
                return rendered[0], rendered[1]
            except RenderError as e:
                log.warning("listening page not rendered: %s", e)
                reasons.append(str(e))
        raise Refusal(503, "transition", "no transition could be rendered for this page "
                      f"({reasons[-1]}); try again later")

    def _specs(self, rng: np.random.Generator, conditions: Sequence[Condition]
               ) -> list[TransitionSpec]:
        songs = {s.song_id: s.duration_s for s in self.library.songs}
        excerpt_s = self.settings.excerpt_s
        sources = sorted(s for s, d in songs.items() if d >= excerpt_s + 1.0)
        if len(sources) < 3:
            raise RenderError("the library has fewer than 3 songs long enough for a transition")
        source = sources[int(rng.integers(len(sources)))]
        query_s = float(rng.uniform(excerpt_s, songs[source]))
        try:
            exit_s, candidates = self.next_segments(source, round(query_s, 2))
        except SegueError as e:
            raise RenderError(f"the matcher gave no next segment for {source}: {e}") from e
        nexts = [(song, entry) for song, entry in candidates
                 if song != source and song in songs and entry + excerpt_s <= songs[song]]
        if not nexts:
            raise RenderError(f"the matcher has no usable next segment after {source}")
        to_song, entry_s = nexts[0]
        others = sorted(s for s, d in songs.items()
                        if s not in (source, to_song) and d >= excerpt_s)
        if not others:
            raise RenderError("the library has no song left for the random condition")
        random_song = others[int(rng.integers(len(others)))]
        random_entry = round(float(rng.uniform(0.0, songs[random_song] - excerpt_s)), 2)

        def spec(condition: Condition) -> TransitionSpec:
            if condition is Condition.RANDOM:
                return TransitionSpec(condition, source, exit_s, random_song, random_entry)
            return TransitionSpec(condition, source, exit_s, to_song, entry_s)

        return [spec(c) for c in conditions]

    def own_page(self, annotator_id: str, page_id: str) -> ListeningPage:
        page = self.store.listening_page(page_id)
        if page is None or page.annotator_id != annotator_id:
            raise Refusal(404, "page_id", "no such listening page of yours")
        return page

    def audio_file(self, annotator_id: str, page_id: str, side: int) -> Path:
        """The encoded transition of side 0 (A) or 1 (B) of one of the annotator's pages."""
        spec = TransitionSpec.of(self.own_page(annotator_id, page_id).sides[side])
        try:
            return self.renderer.render(spec)[0]
        except RenderError as e:
            raise Refusal(503, "transition", str(e)) from e

    # ---- plays and answers ----------------------------------------------------------------
    def played(self, annotator_id: str, page_id: str, side: int, listened_s: float) -> None:
        """Records that `side` played to its end; 409 when that cannot be true yet."""
        page = self._open_page(annotator_id, page_id)
        length_s = page.sides[side].duration_s
        if listened_s < PLAY_TIME_SHARE * length_s:
            raise Refusal(409, "listened_s",
                          "the transition was not heard to its end: play it again")
        heard = {p.side for p in self.store.listening_plays(page.id)} | {side}
        needed = sum(page.sides[s].duration_s for s in heard)
        if (self.clock() - page.served_at).total_seconds() < PLAY_TIME_SHARE * needed:
            raise Refusal(409, "side", "the transitions were played faster than they last")
        self.store.record_listening_play(page.id, side, listened_s, self.clock())

    def answer(self, annotator_id: str, page_id: str, preferred: int,
               ratings: tuple[int, int]) -> bool:
        """Stores the answer; True when it was the annotator's last page."""
        page = self._open_page(annotator_id, page_id)
        plays = {p.side: p.listened_s for p in self.store.listening_plays(page.id)}
        missing = [f"{'AB'[s]}" for s in range(2) if s not in plays]
        if missing:
            raise Refusal(409, "pick", f"play both transitions to their end first: "
                          f"{', '.join(missing)}")
        try:
            self.store.record_listening_answer(ListeningAnswer(
                page.id, annotator_id, preferred, ratings, self.clock(), (plays[0], plays[1])))
        except AlreadyExistsError as e:
            raise Refusal(409, "page_id", "this page is answered already") from e
        return page.position == self.settings.pages - 1

    def _open_page(self, annotator_id: str, page_id: str) -> ListeningPage:
        """The annotator's unanswered current page, or 404/409 naming page_id."""
        page = self.own_page(annotator_id, page_id)
        if self.store.listening_answer(page.id) is not None:
            raise Refusal(409, "page_id", "this page is answered already")
        if page.id != self.store.listening_pages(annotator_id)[-1].id:
            raise Refusal(409, "page_id", "this is not the current page")
        return page


def rate_seam(store: StudioStore, mix_id: str, seam_index: int, rating: int, rater_id: str,
              now: datetime) -> SeamRating:
    """Stores one rating of seam `seam_index` of mix `mix_id` (for the mix viewer): 422
    naming the field for bad values, 409 naming "seam_index" for a second rating."""
    if not 0 < len(mix_id) <= MAX_MIX_ID_CHARS:
        raise Refusal(422, "mix_id", f"mix_id must be 1 to {MAX_MIX_ID_CHARS} characters")
    if isinstance(seam_index, bool) or not isinstance(seam_index, int) or seam_index < 0:
        raise Refusal(422, "seam_index", "seam_index must be an integer from 0")
    if isinstance(rating, bool) or not isinstance(rating, int) \
            or not MIN_RATING <= rating <= MAX_RATING:
        raise Refusal(422, "rating", f"rating must be an integer from {MIN_RATING} to "
                      f"{MAX_RATING}")
    stored = SeamRating(mix_id, seam_index, rating, rater_id, now)
    try:
        store.record_seam_rating(stored)
    except AlreadyExistsError as e:
        raise Refusal(409, "seam_index", "this seam of this mix is rated already") from e
    return stored


def listening_flow(store: StudioStore, library: StudioLibrary, config: StudioConfig,
                   clock: Callable[[], datetime] = now_utc,
                   settings: ListeningSettings | None = None) -> ListeningFlow:
    """The flow over the Studio's matcher (SEGUE_MATCHER_ADDR and the SDK's SEGUE_TOKEN* and
    SEGUE_TLS_*), rendering into the data folder's `transitions/`."""
    settings = settings or ListeningSettings.for_config(config)
    renderer = TransitionRenderer(config.data_dir / "transitions", library, settings)
    matcher = MatcherNextSegments(config.matcher_address, ClientSecurity.from_env())
    return ListeningFlow(store, library, renderer, matcher, settings, clock)


__all__ = ["PAIRINGS", "ListeningFlow", "ListeningSettings", "MatcherNextSegments",
           "NextSegments", "RenderError", "TransitionRenderer",
           "TransitionSpec", "linear_crossfade", "listening_flow", "rate_seam"]
