"""Segue Studio in a real browser: Debian's Chromium, driven by Playwright, completes a whole
15-set triplet session (every clip played to its end) and an admin exports the answers.
Screenshots of every page are written to out/studio-screenshots for people to look at."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium_browser import chromium, shot
from playwright.sync_api import Browser, Page, Route, expect
from studio_fixtures import (
    ADMIN_PASSWORD,
    LiveStudio,
    add_invite,
    careful_pick,
    make_studio,
    matcher_library,
    studio_config,
)

from segue.studio.library import StudioLibrary
from segue.studio.store import StudioStore


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]
            ) -> Iterator[StudioLibrary]:
    with matcher_library(tmp_path_factory.mktemp("studio-matcher"), music_tracks[:8],
                         min_duration_s=2.0) as lib:
        yield lib


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched




def consenting_annotator(browser: Browser, live: LiveStudio, invite: str) -> Page:
    """A new page that has followed `invite` and ticked the agreement, before starting."""
    page = browser.new_page()
    page.goto(f"{live.url}/join/{invite}")
    page.check("input[name=agree]")
    return page


def play_all_and_pick(page: Page, store: StudioStore) -> None:
    """Plays each clip to its end, as a person would, then picks as an attentive one does."""
    pick = careful_pick(store, page.locator("#study").get_attribute("data-item") or "")
    for slot in range(3):
        expect(page.locator(f"#pick-{slot}")).to_be_disabled()
        page.click(f"#play-{slot}")
        expect(page.locator(f"#state-{slot}")).to_have_text("played ✓", timeout=15_000)
    expect(page.locator(f"#pick-{pick}")).to_be_enabled()
    page.click(f"#pick-{pick}")


def test_an_annotator_completes_a_whole_session_and_the_admin_exports_it(
    tmp_path: Path, library: StudioLibrary, browser: Browser,
) -> None:
    studio = make_studio(studio_config(tmp_path), library)
    invite = add_invite(studio)
    with LiveStudio(studio) as live:
        page = browser.new_page()
        page.goto(f"{live.url}/join/{invite}")
        shot(page, "1-consent")
        page.check("input[name=agree]")
        page.click("#start")
        for position in range(15):
            expect(page.locator("#progress-text")).to_have_text(f"Set {position + 1} of 15")
            if position in (0, 14):
                shot(page, f"2-set-{position + 1}")
            play_all_and_pick(page, studio.store)
            page.wait_for_url(f"{live.url}/study")
        expect(page.locator("#done h1")).to_have_text("Thank you!")
        shot(page, "3-done")

        answers = studio.store.answered()
        assert len(answers) == 15
        assert [a.position for a in answers] == list(range(15))
        assert all(min(a.listened_s) >= 0.9 * 0.6 for a in answers)

        admin = browser.new_page()
        admin.goto(f"{live.url}/admin/login")
        admin.fill("input[name=password]", ADMIN_PASSWORD)
        admin.click("#sign-in")
        expect(admin.locator("#answers-total")).to_have_text("15")
        expect(admin.locator("#flagged-total")).to_have_text("0")
        shot(admin, "4-admin")
        response = admin.request.get(f"{live.url}/admin/export/json?include_flagged=1")
        assert response.ok
        dump = json.loads(response.text())
        assert len(dump["answers"]) == 15
        mecomp = admin.request.get(f"{live.url}/admin/export/mecomp?include_flagged=1")
        rows = list(csv.reader(io.StringIO(mecomp.text())))
        assert rows[0] == ["song1", "song2", "song3", "anchor", "positive"]
        # Gold and repeated sets stay out of the triplet exports.
        kinds = [a.triplet.kind.value for a in answers]
        assert len(rows) - 1 == sum(k in ("random", "active") for k in kinds)


def test_a_play_button_opens_only_once_the_script_can_play_its_clip(
    tmp_path: Path, library: StudioLibrary, browser: Browser,
) -> None:
    # A click before the page's script had wired the button was lost without a word; on a
    # busy server (studio.js late) that left a clip "not played" for good.
    studio = make_studio(studio_config(tmp_path, clip_s=2.0), library)
    with LiveStudio(studio) as live:
        page = consenting_annotator(browser, live, add_invite(studio))
        held: list[Route] = []

        def hold(route: Route) -> None:
            held.append(route)

        page.route("**/static/studio.js", hold)
        page.click("#start")
        expect(page.locator("#play-0")).to_be_disabled()
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert held, "the study page never asked for its script"
        expect(page.locator("#play-0")).to_be_disabled()
        held[0].continue_()
        expect(page.locator("#play-0")).to_be_enabled()
        page.click("#play-0")
        expect(page.locator("#state-0")).to_have_text("played ✓", timeout=15_000)


def test_the_choice_stays_closed_until_every_clip_has_played(
    tmp_path: Path, library: StudioLibrary, browser: Browser,
) -> None:
    studio = make_studio(studio_config(tmp_path, clip_s=2.0), library)
    with LiveStudio(studio) as live:
        page = consenting_annotator(browser, live, add_invite(studio))
        page.click("#start")
        page.click("#play-0")
        expect(page.locator("#state-0")).to_have_text("played ✓", timeout=15_000)
        page.click("#play-1")
        expect(page.locator("#state-1")).to_have_text("played ✓", timeout=15_000)
        for slot in range(3):
            expect(page.locator(f"#pick-{slot}")).to_be_disabled()
        # Forcing the answer past the page's rule is refused by the server too.
        item = page.locator("#study").get_attribute("data-item")
        csrf = page.locator("#study").get_attribute("data-csrf")
        refused = page.request.post(f"{live.url}/study/answer",
                                    data={"item_id": item, "pick": 0},
                                    headers={"x-csrf-token": csrf or ""})
        assert refused.status == 409 and refused.json()["field"] == "pick"
        assert studio.store.answered() == []
