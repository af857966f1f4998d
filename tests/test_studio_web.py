"""Segue Studio over real HTTP on loopback: invites, consent, the must-play rule, answers
stored once, admin sign-in and exports, and a clear 4xx naming the field for bad input."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from studio_fixtures import (
    Clock,
    LiveStudio,
    WebClient,
    add_invite,
    careful_pick,
    careless_pick,
    make_studio,
    matcher_library,
    studio_config,
)

from segue.studio.access import digest
from segue.studio.library import StudioLibrary
from segue.studio.store import StudioStore

CLIP_S = 0.6
pytest_plugins = ["postgres_server"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]
            ) -> Iterator[StudioLibrary]:
    with matcher_library(tmp_path_factory.mktemp("studio-web"), music_tracks[:8],
                         min_duration_s=2.0) as lib:
        yield lib


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live(tmp_path: Path, library: StudioLibrary, clock: Clock) -> Iterator[LiveStudio]:
    with LiveStudio(make_studio(studio_config(tmp_path, clip_s=CLIP_S), library, clock)) as s:
        yield s


@pytest.fixture
def pg_live(tmp_path: Path, library: StudioLibrary, clock: Clock, postgres_database: str
            ) -> Iterator[LiveStudio]:
    """The Studio on a real PostgreSQL server, as a shared deployment runs it."""
    config = studio_config(tmp_path, clip_s=CLIP_S, db_url=postgres_database)
    with LiveStudio(make_studio(config, library, clock)) as s:
        yield s


class Browser(WebClient):
    """An annotator's client."""

    def page(self) -> tuple[str, str]:
        """The current set's item id and the page's CSRF token."""
        return self.page_data("/study", "item"), self.csrf

    def play_all(self, clock: Clock, item: str) -> None:
        for slot in range(3):
            clock.advance(CLIP_S)
            played = self.post_json("/study/played",
                                    {"item_id": item, "slot": slot, "listened_s": CLIP_S})
            assert played.status_code == 200, played.text


def joined(live: LiveStudio) -> Browser:
    browser = Browser(live.url)
    assert browser.join(add_invite(live.studio)).status_code == 303
    return browser


def refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


# ---- invites and consent ----------------------------------------------------------------

def test_a_valid_invite_shows_the_consent_page_and_joining_signs_in(live: LiveStudio) -> None:
    browser = Browser(live.url)
    response = browser.join(add_invite(live.studio))
    assert response.status_code == 303 and response.headers["location"] == "/study"
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith("segue_studio="))
    assert all(flag in cookie.lower() for flag in ("httponly", "secure", "samesite=strict"))
    assert browser.request("GET", "/study").status_code == 200


@pytest.mark.parametrize(("uses", "days", "status", "words"), [
    (5, -1.0, 410, "expired"), (1, 1.0, 410, "used up")])
def test_expired_and_used_up_invites_are_refused_with_410(
    live: LiveStudio, uses: int, days: float, status: int, words: str,
) -> None:
    invite = add_invite(live.studio, uses=uses, days=days)
    if words == "used up":
        assert Browser(live.url).join(invite).status_code == 303
    response = Browser(live.url).request("GET", f"/join/{invite}")
    assert response.status_code == status and words in response.text


def test_an_unknown_invite_is_refused_with_404_and_nothing_is_stored(live: LiveStudio) -> None:
    browser = Browser(live.url)
    assert browser.request("GET", "/join/not-a-real-token").status_code == 404
    assert live.studio.store.annotators() == []


def test_joining_needs_consent_and_the_forms_csrf_token(live: LiveStudio) -> None:
    invite = add_invite(live.studio)
    browser = Browser(live.url)
    csrf = browser.form_csrf(browser.request("GET", f"/join/{invite}"))
    refused(browser.request("POST", f"/join/{invite}", data={"csrf": csrf}), 422, "agree")
    refused(browser.request("POST", f"/join/{invite}", data={"csrf": "forged", "agree": "yes"}),
            403, "csrf")
    assert live.studio.store.annotators() == []


def test_only_the_invite_digest_is_stored(live: LiveStudio) -> None:
    invite = add_invite(live.studio)
    assert live.studio.store.invite(digest(invite)) is not None
    assert live.studio.store.invite(invite) is None


# ---- the must-play rule ------------------------------------------------------------------

def test_an_answer_before_every_clip_played_is_refused(live: LiveStudio, clock: Clock) -> None:
    browser = joined(live)
    item, _ = browser.page()
    clock.advance(CLIP_S)
    browser.post_json("/study/played", {"item_id": item, "slot": 0, "listened_s": CLIP_S})
    refused(browser.post_json("/study/answer", {"item_id": item, "pick": 1}), 409, "pick")
    assert live.studio.store.answered() == []


def test_a_play_reported_sooner_than_the_clips_last_is_refused(live: LiveStudio) -> None:
    browser = joined(live)
    item, _ = browser.page()  # the clock has not moved: no time to hear anything
    refused(browser.post_json("/study/played", {"item_id": item, "slot": 0,
                                                "listened_s": CLIP_S}), 409, "slot")


def test_a_play_not_heard_to_its_end_is_refused(live: LiveStudio, clock: Clock) -> None:
    browser = joined(live)
    item, _ = browser.page()
    clock.advance(10)
    refused(browser.post_json("/study/played", {"item_id": item, "slot": 0,
                                                "listened_s": CLIP_S / 3}), 409, "listened_s")


# ---- answers ----------------------------------------------------------------------------

def test_an_answer_is_stored_once_and_a_second_submit_is_refused(
    live: LiveStudio, clock: Clock,
) -> None:
    browser = joined(live)
    item, _ = browser.page()
    browser.play_all(clock, item)
    assert browser.post_json("/study/answer", {"item_id": item, "pick": 2}).status_code == 200
    refused(browser.post_json("/study/answer", {"item_id": item, "pick": 0}), 409, "item_id")
    answers = live.studio.store.answered()
    assert [(a.item_id, a.pick) for a in answers] == [(item, 2)]


@pytest.mark.parametrize("pick", [3, -1, "1.5", None, True, 1e9])
def test_a_pick_that_is_not_one_of_the_three_clips_is_refused(
    live: LiveStudio, clock: Clock, pick: object,
) -> None:
    browser = joined(live)
    item, _ = browser.page()
    browser.play_all(clock, item)
    refused(browser.post_json("/study/answer", {"item_id": item, "pick": pick}), 422, "pick")
    assert live.studio.store.answered() == []


def test_another_annotators_page_is_out_of_session(live: LiveStudio, clock: Clock) -> None:
    alice, bob = joined(live), joined(live)
    alices_item, _ = alice.page()
    bob.page()
    refused(bob.post_json("/study/answer", {"item_id": alices_item, "pick": 0}), 404, "item_id")
    assert bob.request("GET", f"/study/audio/{alices_item}/0").status_code == 404


def test_a_forged_csrf_token_or_no_login_is_refused(live: LiveStudio, clock: Clock) -> None:
    browser = joined(live)
    item, _ = browser.page()
    browser.play_all(clock, item)
    refused(browser.post_json("/study/answer", {"item_id": item, "pick": 0}, csrf="x" * 43),
            403, "csrf")
    stranger = Browser(live.url)
    refused(stranger.post_json("/study/answer", {"item_id": item, "pick": 0}), 401, "login")
    assert live.studio.store.answered() == []


def test_a_cross_origin_post_is_refused(live: LiveStudio, clock: Clock) -> None:
    browser = joined(live)
    item, _ = browser.page()
    browser.play_all(clock, item)
    response = browser.request("POST", "/study/answer", json={"item_id": item, "pick": 0},
                               headers={"x-csrf-token": browser.csrf,
                                        "origin": "https://evil.example"})
    refused(response, 403, "origin")


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 400, "body"), (b"[1, 2]", 400, "body"),
    (b'{"item_id": "", "pick": 0}', 422, "item_id"),
    (b'{"item_id": 7, "pick": 0}', 422, "item_id"),
])
def test_malformed_requests_get_a_4xx_naming_the_field(
    live: LiveStudio, body: bytes, status: int, field: str,
) -> None:
    browser = joined(live)
    browser.page()
    refused(browser.request("POST", "/study/answer", content=body,
                            headers={"x-csrf-token": browser.csrf,
                                     "content-type": "application/json"}), status, field)


def test_an_oversized_body_is_refused_with_413_before_it_is_read(live: LiveStudio) -> None:
    browser = joined(live)
    browser.page()
    big = b'{"item_id": "' + b"x" * 100_000 + b'", "pick": 0}'
    refused(browser.request("POST", "/study/answer", content=big,
                            headers={"x-csrf-token": browser.csrf,
                                     "content-type": "application/json"}), 413, "body")


# ---- audio ------------------------------------------------------------------------------

def test_clips_are_ogg_opus_served_whole_or_by_range(live: LiveStudio) -> None:
    browser = joined(live)
    item, _ = browser.page()
    whole = browser.request("GET", f"/study/audio/{item}/0")
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/ogg"
    assert whole.content[:4] == b"OggS" and whole.headers["accept-ranges"] == "bytes"
    part = browser.request("GET", f"/study/audio/{item}/0", headers={"range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == whole.content[4:100]
    assert part.headers["content-range"] == f"bytes 4-99/{len(whole.content)}"
    bad = browser.request("GET", f"/study/audio/{item}/0", headers={"range": "bytes=999999-"})
    assert bad.status_code == 416
    assert browser.request("GET", f"/study/audio/{item}/3").status_code == 422


def test_a_clip_that_cannot_be_cut_gets_503_without_naming_its_song(
        tmp_path: Path, library: StudioLibrary, clock: Clock) -> None:
    copies: dict[str, Path] = {}
    for song_id, path in library.files.items():
        copies[song_id] = tmp_path / f"song-{len(copies)}{path.suffix}"
        shutil.copy(path, copies[song_id])
    own = StudioLibrary(library.songs, copies)
    with LiveStudio(make_studio(studio_config(tmp_path, clip_s=CLIP_S), own, clock)) as live:
        live.studio.flow.prefetcher.close()  # only the request cuts: no race with the removal
        browser = joined(live)
        item, _ = browser.page()
        clips = live.studio.store.item(item).triplet.clips  # type: ignore[union-attr]
        copies[clips[0].song_id].unlink()
        gone = browser.request("GET", f"/study/audio/{item}/0")
        assert gone.status_code == 503 and gone.json()["field"] == "slot"
        assert "error id" in gone.json()["error"]
        assert copies[clips[0].song_id].name not in gone.text  # the clips stay blind
        # Another clip of the page from another song still plays (a triplet may take two
        # clips from the removed song).
        other = next(i for i, c in enumerate(clips) if c.song_id != clips[0].song_id)
        assert browser.request("GET", f"/study/audio/{item}/{other}").status_code == 200
        assert httpx.get(f"{live.url}/healthz").status_code == 200


# ---- a whole session, admin and exports ---------------------------------------------------

def answer_session(browser: Browser, clock: Clock, store: StudioStore,
                   pick: Callable[[StudioStore, str], int] = careful_pick) -> None:
    for _ in range(15):
        item, _ = browser.page()
        browser.play_all(clock, item)
        answer = browser.post_json("/study/answer", {"item_id": item, "pick": pick(store, item)})
        assert answer.status_code == 200, answer.text
    assert "Thank you" in browser.request("GET", "/study").text


def admin(live: LiveStudio) -> Browser:
    browser = Browser(live.url)
    assert browser.sign_in_admin().status_code == 303
    return browser


def test_a_whole_session_is_stored_and_finished(live: LiveStudio, clock: Clock) -> None:
    browser = joined(live)
    answer_session(browser, clock, live.studio.store)
    answers = live.studio.store.answered()
    assert [a.position for a in answers] == list(range(15))
    kinds = {a.triplet.kind.value for a in answers}
    assert {"gold", "repeat"} <= kinds
    sessions = live.studio.store.sessions_of(answers[0].annotator_id)
    assert sessions[0].finished_at is not None


def test_a_warmed_library_serves_a_whole_session_without_cutting_a_clip(
        tmp_path: Path, library: StudioLibrary, clock: Clock) -> None:
    config = studio_config(tmp_path, clip_s=CLIP_S, clip_step_s=6.0)
    with LiveStudio(make_studio(config, library, clock)) as live:
        queued = live.studio.flow.warm_library()
        for _ in range(600):
            warm = httpx.get(f"{live.url}/healthz").json()["clips_warm"]
            if warm["finished"]:
                break
            time.sleep(0.1)
        assert warm == {"done": queued, "total": queued, "failed": 0, "finished": True}
        cut_ahead = sorted(config.clip_cache_dir.glob("*.opus"))
        assert len(cut_ahead) == queued >= 3 * len(library.songs)  # every song's grid
        browser = joined(live)
        for _ in range(15):
            item, _ = browser.page()
            for slot in range(3):
                assert browser.request("GET", f"/study/audio/{item}/{slot}").status_code == 200
            browser.play_all(clock, item)
            browser.post_json("/study/answer", {"item_id": item, "pick": 0})
        assert sorted(config.clip_cache_dir.glob("*.opus")) == cut_ahead  # all from the cache


def test_exports_and_stats_need_the_admin_sign_in(live: LiveStudio) -> None:
    stranger = Browser(live.url)
    refused(stranger.request("GET", "/admin/export/mecomp"), 401, "login")
    assert stranger.request("GET", "/admin").status_code == 303
    annotator = joined(live)
    refused(annotator.request("GET", "/admin/export/json"), 401, "login")


def test_a_wrong_admin_password_is_refused_and_repeated_failures_are_slowed(
    live: LiveStudio,
) -> None:
    browser = Browser(live.url)
    statuses = []
    for _ in range(6):
        csrf = browser.form_csrf(browser.request("GET", "/admin/login"))
        statuses.append(browser.request("POST", "/admin/login",
                                        data={"csrf": csrf, "password": "wrong" * 4}).status_code)
    assert statuses == [401] * 5 + [429]


def test_the_admin_sees_the_answers_and_creates_invites(live: LiveStudio, clock: Clock) -> None:
    answer_session(joined(live), clock, live.studio.store)
    browser = admin(live)
    page = browser.request("GET", "/admin")
    assert page.status_code == 200 and 'id="answers-total">15<' in page.text
    made = browser.request("POST", "/admin/invites", data={
        "csrf": browser.form_csrf(page), "label": "friends", "max_uses": "3", "days": "7"})
    link = re.search(r'id="new-invite">([^<]+)<', made.text)
    assert made.status_code == 200 and link
    assert Browser(live.url).request("GET", link.group(1)).status_code == 200
    mecomp = browser.request("GET", "/admin/export/mecomp")
    assert mecomp.status_code == 200
    assert mecomp.text.splitlines()[0] == "song1,song2,song3,anchor,positive"


def test_every_response_carries_the_security_headers(live: LiveStudio) -> None:
    response = Browser(live.url).request("GET", "/join/whatever")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_answers_and_requests_are_counted_in_prometheus(live: LiveStudio, clock: Clock) -> None:
    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("segue_studio_answers_total", {"kind": "gold"})
    answer_session(joined(live), clock, live.studio.store)
    assert value("segue_studio_answers_total", {"kind": "gold"}) > before
    assert value("segue_studio_requests_total", {"route": "/study/answer", "method": "POST",
                                                 "status": "200"}) >= 15


def test_a_careless_annotator_is_flagged_and_left_out_of_exports_by_default(
    live: LiveStudio, clock: Clock,
) -> None:
    answer_session(joined(live), clock, live.studio.store)
    answer_session(joined(live), clock, live.studio.store, careless_pick)
    browser = admin(live)
    page = browser.request("GET", "/admin")
    assert 'id="flagged-total">1<' in page.text and "gold accuracy" in page.text
    kept = json.loads(browser.request("GET", "/admin/export/json").text)["answers"]
    everyone = json.loads(browser.request(
        "GET", "/admin/export/json?include_flagged=1").text)["answers"]
    assert len(kept) == 15 and len(everyone) == 30
    assert sum(a["flagged"] for a in everyone) == 15


# ---- PostgreSQL, the shared deployment's database ------------------------------------------

@pytest.mark.slow
def test_a_whole_session_and_its_export_on_postgresql(pg_live: LiveStudio, clock: Clock) -> None:
    answer_session(joined(pg_live), clock, pg_live.studio.store)
    mecomp = admin(pg_live).request("GET", "/admin/export/mecomp")
    rows = mecomp.text.splitlines()
    kinds = [a.triplet.kind.value for a in pg_live.studio.store.answered()]
    assert len(rows) - 1 == sum(k in ("random", "active") for k in kinds) > 0


@pytest.mark.slow
def test_a_second_submit_is_refused_on_postgresql_too(pg_live: LiveStudio, clock: Clock) -> None:
    browser = joined(pg_live)
    item, _ = browser.page()
    browser.play_all(clock, item)
    assert browser.post_json("/study/answer", {"item_id": item, "pick": 1}).status_code == 200
    refused(browser.post_json("/study/answer", {"item_id": item, "pick": 1}), 409, "item_id")
    assert len(pg_live.studio.store.answered()) == 1
