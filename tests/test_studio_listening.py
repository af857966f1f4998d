"""The blind transition listening test: its results maths, rendering real transitions of real
songs under each condition, its tables' migration, and its pages over real HTTP on loopback
(a real matcher answers NextSegment, the mixer renders in process, SQLite stores)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from studio_fixtures import (
    Clock,
    LiveStudio,
    WebClient,
    add_invite,
    make_studio,
    served_matcher_library,
    studio_config,
)

from segue.audio import decode
from segue.client.security import ClientSecurity
from segue.studio.clips import RATE_HZ
from segue.studio.http import Refusal
from segue.studio.library import StudioLibrary
from segue.studio.listening import (
    PAIRINGS,
    ListeningSettings,
    MatcherNextSegments,
    RenderError,
    TransitionRenderer,
    TransitionSpec,
    linear_crossfade,
    rate_seam,
)
from segue.studio.listening_model import (
    AnsweredComparison,
    Condition,
    ListeningAnswer,
    ListeningPage,
    SeamRating,
    Transition,
)
from segue.studio.listening_stats import SEAMS_ROW, results, t_interval, wilson_interval
from segue.studio.schema import metadata
from segue.studio.sql_store import MIGRATIONS, SqlStore, make_engine
from segue.studio.store import AlreadyExistsError

SHORT = ListeningSettings(pages=3, excerpt_s=5.0, overlap_s=1.5, context_s=1.0)
SHORT_OVERLAP_S = 1.5
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# ---- the results maths -------------------------------------------------------------------

@pytest.mark.parametrize(("wins", "n", "low", "high"), [
    (8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0), (50, 100, 0.4038, 0.5962),
])
def test_the_wilson_interval_has_its_known_values(
    wins: int, n: int, low: float, high: float,
) -> None:
    interval = wilson_interval(wins, n)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=5e-5)


def test_the_wilson_interval_of_nothing_is_none_and_bad_counts_are_refused() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="wins"):
        wilson_interval(3, 2)


def test_the_t_interval_of_ratings_has_its_known_values() -> None:
    # mean 3, s = 1.5811, t(0.975, 4) = 2.7764: 3 +- 1.9632
    assert t_interval([1, 2, 3, 4, 5]) == pytest.approx((1.0368, 4.9632), abs=5e-5)
    # mean 4.5, s = 0.5774, t(0.975, 3) = 3.1824: 4.5 +- 0.9187, clipped to 5
    assert t_interval([4, 5, 4, 5]) == pytest.approx((3.5813, 5.0), abs=5e-5)
    assert t_interval([3.0]) is None


def _transition(condition: Condition) -> Transition:
    return Transition(condition, "s", 20.0, "t", 7.0, 4.0)


def _answered(a: Condition, b: Condition, preferred: int, ratings: tuple[int, int]
              ) -> AnsweredComparison:
    page = ListeningPage("p", "x", 0, (_transition(a), _transition(b)), T0)
    return AnsweredComparison(page, ListeningAnswer("p", "x", preferred, ratings, T0,
                                                    (4.0, 4.0)))


def test_results_count_wins_over_the_comparisons_each_condition_took_part_in() -> None:
    seg, cross, rand = Condition.SEGUE, Condition.CROSSFADE, Condition.RANDOM
    answered = [_answered(seg, cross, 0, (5, 2)), _answered(rand, seg, 1, (1, 4)),
                _answered(cross, rand, 1, (3, 3)), _answered(seg, cross, 1, (3, 4))]
    seams = [SeamRating("mix", i, r, "x", T0) for i, r in enumerate([4, 5, 3])]
    rows = {row.name: row for row in results(answered, seams)}
    assert [r.name for r in results(answered, seams)] == [
        "segue", "crossfade", "random", "seams"]
    assert (rows["segue"].comparisons, rows["segue"].wins) == (3, 2)
    assert (rows["crossfade"].comparisons, rows["crossfade"].wins) == (3, 1)
    assert (rows["random"].comparisons, rows["random"].wins) == (2, 1)
    assert rows["segue"].preference == pytest.approx(2 / 3)
    assert rows["segue"].preference_interval == wilson_interval(2, 3)
    assert rows["segue"].mean_rating == pytest.approx(4.0)       # 5, 4, 3
    assert rows["crossfade"].mean_rating == pytest.approx(3.0)   # 2, 3, 4
    seam_row = rows["seams"]
    assert seam_row.label == SEAMS_ROW and seam_row.comparisons == 0
    assert seam_row.preference is None and seam_row.mean_rating == pytest.approx(4.0)
    assert seam_row.rating_interval == t_interval([4.0, 5.0, 3.0])
    assert json.loads(json.dumps(seam_row.to_json()))["ratings"] == 3


# ---- rendering real songs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]
           ) -> Iterator[tuple[StudioLibrary, str]]:
    with served_matcher_library(tmp_path_factory.mktemp("listening-matcher"),
                                music_tracks[:8], min_duration_s=2.0) as found:
        yield found


@pytest.fixture(scope="module")
def library(served: tuple[StudioLibrary, str]) -> StudioLibrary:
    return served[0]


@pytest.fixture(scope="module")
def transitions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One render cache for the module: each (pair, condition) is rendered once."""
    return tmp_path_factory.mktemp("listening-data")


def decoded_s(path: Path) -> float:
    return decode(path, RATE_HZ).size / RATE_HZ


def test_each_condition_renders_real_audio_of_the_expected_length(
    library: StudioLibrary, served: tuple[StudioLibrary, str], transitions_dir: Path,
) -> None:
    renderer = TransitionRenderer(transitions_dir / "transitions", library, SHORT)
    source = library.songs[0].song_id
    exit_s, candidates = MatcherNextSegments(served[1], ClientSecurity())(source, 21.0)
    assert exit_s == pytest.approx(21.0) and candidates
    to_song, entry_s = next((s, e) for s, e in candidates if s != source and e + 5.0 <= 28.0)
    segue = TransitionSpec(Condition.SEGUE, source, exit_s, to_song, entry_s)
    random = TransitionSpec(Condition.RANDOM, source, exit_s, library.songs[5].song_id, 3.0)
    lengths: dict[Condition, float] = {}
    for spec in (replace(segue, condition=Condition.CROSSFADE), segue, random):
        path, length_s = renderer.render(spec)
        assert path.read_bytes()[:4] == b"OggS"
        assert decoded_s(path) == pytest.approx(length_s, abs=0.03)
        lengths[spec.condition] = length_s
    # The crossfade copies the segue render's lengths; each render spans the mixer's overlap
    # plus its context on either side, within what the two 5 s excerpts can give.
    assert lengths[Condition.CROSSFADE] == pytest.approx(lengths[Condition.SEGUE], abs=1e-3)
    for length_s in lengths.values():
        assert 2 * SHORT.context_s + SHORT_OVERLAP_S - 0.5 <= length_s <= 2 * 5.0
    # Rendered once per (pair, condition): a second ask reads the cache.
    path, _ = renderer.render(segue)
    stamp = path.stat().st_mtime_ns
    assert renderer.render(segue)[0].stat().st_mtime_ns == stamp


def test_a_plain_crossfade_keeps_both_songs_unchanged_outside_the_overlap() -> None:
    a = np.full((RATE_HZ * 3, 2), 0.5, dtype=np.float32)
    b = np.full((RATE_HZ * 3, 2), -0.25, dtype=np.float32)
    out = linear_crossfade(a, b, 2.0, 0.5, 1.5, 1.0, 0.2)
    assert out.shape == (2 * RATE_HZ, 2)
    assert np.allclose(out[: RATE_HZ // 2], 0.5)            # A alone
    assert np.allclose(out[3 * RATE_HZ // 2:], -0.25)         # B alone
    middle = out[RATE_HZ]                                     # halfway: half of each
    assert middle == pytest.approx([0.125, 0.125], abs=1e-3)


def test_a_transition_whose_audio_is_missing_is_refused_naming_why(
    library: StudioLibrary, tmp_path: Path,
) -> None:
    broken = StudioLibrary(library.songs, {**library.files,
                                           library.songs[1].song_id: tmp_path / "gone.opus"})
    renderer = TransitionRenderer(tmp_path / "transitions", broken, SHORT)
    spec = TransitionSpec(Condition.SEGUE, library.songs[0].song_id, 14.0,
                          library.songs[1].song_id, 7.0)
    with pytest.raises(RenderError, match=library.songs[1].song_id):
        renderer.render(spec)
    with pytest.raises(RenderError, match="too early"):
        renderer.render(replace(spec, to_song=library.songs[2].song_id, exit_s=0.5))


# ---- storage ----------------------------------------------------------------------------

def test_the_migration_makes_the_tables_from_0001_and_keeps_what_is_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0001")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO invites VALUES ('i', :sha, 'old', :t, :t, 1, 0)"),
                     {"sha": "0" * 64, "t": "2026-01-01 00:00:00"})
    engine.dispose()
    store = SqlStore.open(url)
    assert [i.label for i in store.invites()] == ["old"]
    store.close()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head() == "0002"
    command.downgrade(config, "0001")


def test_seam_ratings_are_stored_once_per_rater_and_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'studio.db'}")
    try:
        rate_seam(store, "mix-1", 0, 4, "admin", T0)
        rate_seam(store, "mix-1", 1, 2, "a" * 32, T0 + timedelta(seconds=1))
        with pytest.raises(AlreadyExistsError):
            store.record_seam_rating(SeamRating("mix-1", 0, 5, "admin", T0))
        for args, field in [(("mix-1", 0, 3, "admin"), "seam_index"),
                            (("mix-1", 2, 6, "admin"), "rating"),
                            (("mix-1", 2, 0, "admin"), "rating"),
                            (("mix-1", -1, 3, "admin"), "seam_index"),
                            (("", 2, 3, "admin"), "mix_id")]:
            with pytest.raises(Refusal) as refused:
                rate_seam(store, *args, now=T0)
            assert refused.value.field == field
        assert [(s.seam_index, s.rating) for s in store.seam_ratings()] == [(0, 4), (1, 2)]
    finally:
        store.close()


# ---- the pages over HTTP ------------------------------------------------------------------

@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live(tmp_path: Path, served: tuple[StudioLibrary, str], transitions_dir: Path,
         clock: Clock) -> Iterator[LiveStudio]:
    config = studio_config(transitions_dir, matcher_address=served[1],
                           db_url=f"sqlite:///{tmp_path / 'studio.db'}")
    with LiveStudio(make_studio(config, served[0], clock)) as s:
        yield s


class Listener(WebClient):
    """A signed-in annotator's (or the admin's) client of the listening test."""

    def __init__(self, live: LiveStudio) -> None:
        super().__init__(live.url)
        self.live = live

    def join(self, invite: str | None = None) -> httpx.Response:
        return super().join(invite or add_invite(self.live.studio))

    def joined(self) -> Listener:
        assert self.join().status_code == 303
        return self

    def admin(self) -> Listener:
        assert self.sign_in_admin().status_code == 303
        return self

    def page(self) -> str:
        return self.page_data("/listen", "page")

    def post(self, path: str, body: object) -> httpx.Response:
        return self.post_json(path, body)

    def play_both(self, clock: Clock, page_id: str) -> None:
        page = self.live.studio.store.listening_page(page_id)
        assert page is not None
        for side, transition in zip("AB", page.sides, strict=True):
            clock.advance(transition.duration_s)
            played = self.post("/listen/played", {"page_id": page_id, "side": side,
                                                  "listened_s": transition.duration_s})
            assert played.status_code == 200, played.text

    def answer(self, page_id: str, pick: object = "A", rating_a: object = 4,
               rating_b: object = 2) -> httpx.Response:
        return self.post("/listen/answer", {"page_id": page_id, "pick": pick,
                                            "rating_a": rating_a, "rating_b": rating_b})


def refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_an_annotator_compares_every_pairing_blind_and_each_answer_is_stored_once(
    live: LiveStudio, clock: Clock,
) -> None:
    listener = Listener(live).joined()
    seen = []
    for position in range(3):
        page_id = listener.page()
        html = listener.request("GET", "/listen").text
        assert f"Pair {position + 1} of 3" in html
        assert not any(c.value in html.lower() for c in (Condition.CROSSFADE,
                                                          Condition.RANDOM))
        listener.play_both(clock, page_id)
        assert listener.answer(page_id, "AB"[position % 2]).status_code == 200
        refused(listener.answer(page_id, "B"), 409, "page_id")
        page = live.studio.store.listening_page(page_id)
        assert page is not None
        seen.append(frozenset(t.condition for t in page.sides))
        assert page.sides[0].from_song == page.sides[1].from_song
    assert sorted(seen, key=sorted) == sorted((frozenset(p) for p in PAIRINGS), key=sorted)
    done = listener.request("GET", "/listen")
    assert done.status_code == 200 and 'id="listen-done"' in done.text
    answered = live.studio.store.answered_comparisons()
    assert len(answered) == 3 and all(a.answer.ratings == (4, 2) for a in answered)
    assert [a.answer.preferred for a in answered] == [0, 1, 0]


def test_an_answer_before_both_transitions_played_is_refused(
    live: LiveStudio, clock: Clock,
) -> None:
    listener = Listener(live).joined()
    page_id = listener.page()
    refused(listener.post("/listen/played", {"page_id": page_id, "side": "A",
                                             "listened_s": 30.0}), 409, "side")
    page = live.studio.store.listening_page(page_id)
    assert page is not None
    clock.advance(60)
    refused(listener.post("/listen/played", {"page_id": page_id, "side": "A",
                                             "listened_s": 0.2}), 409, "listened_s")
    assert listener.post("/listen/played", {"page_id": page_id, "side": "A",
                                            "listened_s": page.sides[0].duration_s}
                         ).status_code == 200
    refused(listener.answer(page_id), 409, "pick")
    assert live.studio.store.answered_comparisons() == []


@pytest.mark.parametrize(("body", "field"), [
    ({"pick": "C"}, "pick"), ({"pick": 0}, "pick"), ({"pick": None}, "pick"),
    ({"rating_a": 6}, "rating_a"), ({"rating_a": "five"}, "rating_a"),
    ({"rating_b": 0}, "rating_b"), ({"rating_b": True}, "rating_b"),
    ({"page_id": ""}, "page_id"),
])
def test_bad_answers_get_a_422_naming_the_field_and_nothing_is_stored(
    live: LiveStudio, clock: Clock, body: dict[str, object], field: str,
) -> None:
    listener = Listener(live).joined()
    page_id = listener.page()
    listener.play_both(clock, page_id)
    answer = {"page_id": page_id, "pick": "A", "rating_a": 3, "rating_b": 3, **body}
    refused(listener.post("/listen/answer", answer), 422, field)
    refused(listener.post("/listen/played", {"page_id": page_id, "side": "C",
                                             "listened_s": 1.0}), 422, "side")
    assert live.studio.store.answered_comparisons() == []


def test_another_annotators_page_and_its_audio_are_out_of_session(
    live: LiveStudio, clock: Clock,
) -> None:
    alice, bob = Listener(live).joined(), Listener(live).joined()
    alices = alice.page()
    alice.play_both(clock, alices)
    bob.page()
    refused(bob.answer(alices), 404, "page_id")
    refused(bob.post("/listen/played", {"page_id": alices, "side": "A", "listened_s": 9.0}),
            404, "page_id")
    assert bob.request("GET", f"/listen/audio/{alices}/A").status_code == 404
    stranger = Listener(live)
    refused(stranger.request("GET", f"/listen/audio/{alices}/A"), 401, "login")
    assert live.studio.store.answered_comparisons() == []


def test_transitions_are_ogg_opus_served_whole_or_by_range(live: LiveStudio) -> None:
    listener = Listener(live).joined()
    page_id = listener.page()
    whole = listener.request("GET", f"/listen/audio/{page_id}/B")
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/ogg"
    assert whole.content[:4] == b"OggS" and whole.headers["accept-ranges"] == "bytes"
    part = listener.request("GET", f"/listen/audio/{page_id}/B", headers={"range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == whole.content[4:100]
    refused(listener.request("GET", f"/listen/audio/{page_id}/C"), 422, "side")


def test_the_results_are_admin_only_with_each_condition_and_the_mix_seams(
    live: LiveStudio, clock: Clock,
) -> None:
    listener = Listener(live).joined()
    page_id = listener.page()
    listener.play_both(clock, page_id)
    assert listener.answer(page_id, "B", 2, 5).status_code == 200
    rate_seam(live.studio.store, "mix-7", 0, 5, "admin", T0)
    rate_seam(live.studio.store, "mix-7", 1, 3, "admin", T0)
    assert Listener(live).request("GET", "/admin/listening").status_code == 303
    refused(listener.request("GET", "/admin/listening.json"), 401, "login")

    admin = Listener(live).admin()
    html = admin.request("GET", "/admin/listening")
    assert html.status_code == 200
    for name in ("segue", "crossfade", "random", "seams"):
        assert f'id="result-{name}"' in html.text
    assert SEAMS_ROW in html.text and "Wilson" in html.text
    dump = admin.request("GET", "/admin/listening.json").json()
    rows = {row["name"]: row for row in dump["conditions"]}
    page = live.studio.store.listening_page(page_id)
    assert page is not None
    winner = page.sides[1].condition.value
    assert rows[winner]["wins"] == 1 and rows[winner]["comparisons"] == 1
    assert rows[winner]["mean_rating"] == 5.0
    assert rows["seams"]["ratings"] == 2 and rows["seams"]["mean_rating"] == 4.0
    assert dump["preference_interval"] == "wilson"


def test_a_page_that_cannot_be_rendered_is_refused_with_a_message_and_nothing_stored(
    tmp_path: Path, served: tuple[StudioLibrary, str],
) -> None:
    library = served[0]
    broken = StudioLibrary(library.songs, {s.song_id: tmp_path / "gone.opus"
                                           for s in library.songs})
    config = studio_config(tmp_path, matcher_address=served[1])
    with LiveStudio(make_studio(config, broken)) as live:
        listener = Listener(live).joined()
        page = listener.request("GET", "/listen")
        assert page.status_code == 503 and "could be rendered" in page.text
        annotator = live.studio.store.annotators()[0].id
        assert live.studio.store.listening_pages(annotator) == []


def test_the_triplet_sessions_end_links_to_the_listening_test() -> None:
    done = (Path(__file__).resolve().parents[1] / "segue" / "studio" / "templates"
            / "done.html").read_text(encoding="utf-8")
    assert 'href="/listen"' in done
