"""The listening test in a real browser: Debian's Chromium, driven by Playwright, plays both
transitions of a listening page to their end, picks the more seamless one, rates both and
submits; a screenshot is written to out/studio-screenshots for people to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium_browser import chromium, shot
from playwright.sync_api import Browser, expect
from studio_fixtures import (
    LiveStudio,
    WebClient,
    add_invite,
    make_studio,
    served_matcher_library,
    studio_config,
)

from segue.studio.library import StudioLibrary


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]
           ) -> Iterator[tuple[StudioLibrary, str]]:
    with served_matcher_library(tmp_path_factory.mktemp("listening-matcher"),
                                music_tracks[:8], min_duration_s=2.0) as found:
        yield found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_an_annotator_completes_a_listening_page(
    tmp_path: Path, served: tuple[StudioLibrary, str], browser: Browser,
) -> None:
    library, address = served
    studio = make_studio(studio_config(tmp_path, matcher_address=address), library)
    invite = add_invite(studio)
    with LiveStudio(studio) as live:
        page = browser.new_page()
        page.goto(f"{live.url}/join/{invite}")
        page.check("input[name=agree]")
        page.click("#start")
        page.wait_for_url(f"{live.url}/study")
        page.goto(f"{live.url}/listen")  # where the triplet session's end links to
        expect(page.locator("#listen-progress")).to_have_text("Pair 1 of 3")
        page_id = page.locator("#listen").get_attribute("data-page") or ""
        expect(page.locator("#listen-submit")).to_be_disabled()
        expect(page.locator("#pick-A")).to_be_disabled()
        for side in "AB":
            page.click(f"#listen-play-{side}")
            expect(page.locator(f"#listen-state-{side}")).to_have_text("played ✓",
                                                                       timeout=30_000)
        expect(page.locator("#pick-A")).to_be_enabled()
        page.check("#pick-B")
        page.check("#rating-A-2")
        expect(page.locator("#listen-submit")).to_be_disabled()  # B is not rated yet
        page.check("#rating-B-5")
        shot(page, "5-listening-page")
        page.click("#listen-submit")
        expect(page.locator("#listen-progress")).to_have_text("Pair 2 of 3", timeout=30_000)

        answered = studio.store.answered_comparisons()
        assert [(a.page.id, a.answer.preferred, a.answer.ratings) for a in answered] == [
            (page_id, 1, (2, 5))]
        played = studio.store.listening_plays(page_id)
        sides = answered[0].page.sides
        assert [p.side for p in played] == [0, 1]
        assert all(p.listened_s >= 0.9 * sides[p.side].duration_s for p in played)

        # The admin's export counts the answer for the conditions the page compared.
        admin = WebClient(live.url)
        assert admin.sign_in_admin().status_code == 303
        rows = {r["name"]: r for r in admin.request("GET", "/admin/listening.json")
                .json()["conditions"]}
        a, b = (t.condition.value for t in sides)
        assert (rows[a]["comparisons"], rows[a]["wins"], rows[a]["ratings"]) == (1, 0, 1)
        assert (rows[b]["comparisons"], rows[b]["wins"], rows[b]["ratings"]) == (1, 1, 1)
        assert rows[b]["mean_rating"] == 5.0
