"""Debian's Chromium driven by Playwright, as the Studio's browser tests use it, and where
their screenshots go for people to look at."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "out" / "studio-screenshots"
# The flags Chromium needs on a machine with no network beyond the registries and no sound card.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--mute-audio"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched headless for the length of the block."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make setup`"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Page, name: str) -> Path:
    """Writes a full-page screenshot to out/studio-screenshots/`name`.png; returns its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
