"""The admin's mix viewer on a real mix: three packaged songs rendered by the mix engine as
`segue mix --playlist --local` renders them, the sheet's new "timeline" (gain curves, clocks,
beats and sections on the mix's time axis), the viewer's JSON, audio served by range, seam
ratings refused for bad input, and the page in Debian's Chromium (played, cursor moving, a
seam rated) with a screenshot in out/studio-screenshots/mix-viewer.png."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from chromium_browser import chromium, shot
from playwright.sync_api import Browser, expect
from studio_fixtures import (
    ADMIN_PASSWORD,
    VIEWER_MIX_TRACKS,
    LiveStudio,
    WebClient,
    make_studio,
    render_viewer_mix,
    studio_config,
)

from segue.mixing.continuous_mix import GAIN_TOLERANCE, ContinuousMix
from segue.mixing.mixdown import ENVELOPE_RATE_HZ
from segue.studio.library import StudioLibrary
from segue.studio.mixes import PEAK_PAIRS, MixLibrary, load_mix

MIX_ID = "friday-set"
NO_LIBRARY = StudioLibrary((), {})  # the viewer needs no clips


@dataclass(frozen=True)
class RenderedMix:
    mix: ContinuousMix
    folder: Path  # the mixes folder, holding MIX_ID/set.mp3, set.json, set.cue
    sheet: dict[str, Any]

    @property
    def audio(self) -> Path:
        return self.folder / MIX_ID / "set.mp3"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, music_tracks: list[Path]) -> RenderedMix:
    folder = tmp_path_factory.mktemp("mixes")
    out = folder / MIX_ID / "set.mp3"
    mix = render_viewer_mix([music_tracks[i] for i in VIEWER_MIX_TRACKS], out)
    return RenderedMix(mix, folder, json.loads(out.with_suffix(".json").read_text()))


@pytest.fixture
def live(tmp_path: Path, rendered: RenderedMix) -> Iterator[LiveStudio]:
    studio = make_studio(studio_config(tmp_path, mixes_dir=rendered.folder), NO_LIBRARY)
    with LiveStudio(studio) as s:
        yield s


def stored_ratings(live: LiveStudio) -> list[tuple[str, int, int, str]]:
    return [(r.mix_id, r.seam_index, r.rating, r.rater_id)
            for r in live.studio.store.seam_ratings()]


def admin(live: LiveStudio) -> WebClient:
    client = WebClient(live.url)
    assert client.sign_in_admin().status_code == 303
    assert client.page_data(f"/mixes/{MIX_ID}", "mix") == MIX_ID  # keeps its CSRF token
    return client


def refused(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["field"] == field
    return body


# ---- what `segue mix --playlist` writes -------------------------------------------------

def test_the_sheet_keeps_its_keys_and_adds_the_timeline_of_every_song(
    rendered: RenderedMix,
) -> None:
    sheet, mix = rendered.sheet, rendered.mix
    for key in ("duration_s", "sample_rate_hz", "loudness_lufs", "songs", "transitions"):
        assert key in sheet
    assert [s["title"] for s in sheet["songs"]] == [c.title for c in mix.cues]
    assert set(sheet["songs"][0]) == set(vars(mix.cues[0]))  # the songs' entries are unchanged
    lanes = sheet["timeline"]["songs"]
    assert [lane["number"] for lane in lanes] == [1, 2, 3]
    assert sheet["timeline"]["gain_tolerance"] == GAIN_TOLERANCE
    for lane, gains in zip(lanes, mix.gains, strict=True):
        # The simplified curve redraws the mix mask within its tolerance (plus rounding).
        t, g = np.array(lane["gain"]).T
        at = np.arange(gains.size) / ENVELOPE_RATE_HZ
        redrawn = np.interp(at, t, g, left=0.0, right=0.0)
        assert np.max(np.abs(redrawn - gains)) <= GAIN_TOLERANCE + 1e-3
        assert len(lane["gain"]) < gains.size / 20  # compact


def test_every_songs_beats_and_sections_lie_where_it_is_heard(rendered: RenderedMix) -> None:
    sheet = rendered.sheet
    for song, lane in zip(sheet["songs"], sheet["timeline"]["songs"], strict=True):
        beats = np.array(lane["beats_s"])
        assert beats.size >= 20 and np.all(np.diff(beats) > 0)
        assert song["heard_from_s"] - 1e-3 <= beats[0] and beats[-1] <= song["heard_until_s"]
        assert len(lane["beat_positions"]) == beats.size
        assert lane["beat_source"] in ("analysis", "estimated")
        for section in lane["sections"]:
            assert song["heard_from_s"] - 1e-3 <= section["start_s"] < section["end_s"]
            assert section["end_s"] <= song["heard_until_s"] + 1e-3
        mix_s, song_s = np.array(lane["clock"]).T
        assert np.all(np.diff(mix_s) > 0) and np.all(np.diff(song_s) > 0)
        # Outside its transitions a song plays sample for sample: the clock's last piece runs
        # at the song's own speed.
        assert (song_s[-1] - song_s[-2]) / (mix_s[-1] - mix_s[-2]) == pytest.approx(1.0, abs=1e-3)


def test_beat_matched_seams_put_the_incoming_beats_on_the_outgoing_ones(
    rendered: RenderedMix,
) -> None:
    sheet = rendered.sheet
    lanes = sheet["timeline"]["songs"]
    matched = 0
    for t in sheet["transitions"]:
        error = t["report"].get("beat_alignment_error_ms")
        if not isinstance(error, float) or not np.isfinite(error):
            continue  # a free-time fade lines up nothing
        a, b = np.array(lanes[t["number"] - 1]["beats_s"]), np.array(lanes[t["number"]]["beats_s"])
        inside = b[(b > t["overlap_start_s"]) & (b < t["overlap_end_s"])]
        gaps = np.min(np.abs(inside[:, None] - a[None, :]), axis=1)
        assert np.median(gaps) < 0.03, gaps
        matched += 1
    assert matched >= 1


# ---- the viewer's model and waveform ------------------------------------------------------

def test_the_mix_folder_reads_as_a_view_and_its_waveform_is_cached(
    rendered: RenderedMix, tmp_path: Path,
) -> None:
    view = load_mix(rendered.folder / MIX_ID)
    assert view.mix_id == MIX_ID and view.media_type == "audio/mpeg"
    assert len(view.seams) == len(view.songs) - 1 == 2
    assert not view.approximate_gains
    library = MixLibrary(rendered.folder, tmp_path / "cache")
    peaks = library.peaks(view)
    assert len(peaks) == PEAK_PAIRS
    assert all(-1.1 <= lo <= hi <= 1.1 for lo, hi in peaks)  # MP3 overshoots a little
    assert max(hi for _, hi in peaks) > 0.3  # music, not silence
    assert (tmp_path / "cache" / f"{MIX_ID}.peaks.json").is_file()
    assert MixLibrary(rendered.folder, tmp_path / "cache").peaks(view) == peaks


def test_a_sheet_without_a_timeline_opens_with_straight_gain_ramps(
    rendered: RenderedMix, tmp_path: Path,
) -> None:
    old = tmp_path / "old-mix"
    old.mkdir()
    shutil.copy(rendered.audio, old / "set.mp3")
    sheet = dict(rendered.sheet)
    del sheet["timeline"]
    (old / "set.json").write_text(json.dumps(sheet))
    view = load_mix(old)
    assert view.approximate_gains
    first, second = view.songs[0], view.songs[1]
    assert first.gain[0] == (0.0, 1.0) and first.gain[-1][1] == 0.0
    assert second.gain[0][0] == pytest.approx(second.heard_from_s) and second.gain[0][1] == 0.0
    assert second.beats_s == [] and second.sections == []


def test_a_broken_folder_is_listed_with_its_problem(rendered: RenderedMix, tmp_path: Path
                                                   ) -> None:
    folder = tmp_path / "mixes"
    shutil.copytree(rendered.folder / MIX_ID, folder / MIX_ID)
    (folder / "broken").mkdir()
    (folder / "broken" / "set.ogg").write_bytes(b"not audio")
    (folder / "broken" / "set.json").write_text('{"songs": 3}')
    rows = MixLibrary(folder, tmp_path / "cache").listing()
    assert [r.mix_id for r in rows] == ["broken", MIX_ID]
    assert "not a mix sheet" in rows[0].problem and rows[1].songs == 3


# ---- over HTTP ----------------------------------------------------------------------------

def test_the_data_endpoint_gives_songs_seams_and_peaks_on_the_mix_timeline(
    live: LiveStudio, rendered: RenderedMix,
) -> None:
    client = admin(live)
    listing = client.request("GET", "/mixes")
    assert listing.status_code == 200 and f'href="/mixes/{MIX_ID}"' in listing.text
    response = client.request("GET", f"/mixes/{MIX_ID}/data.json")
    assert response.status_code == 200
    data = response.json()
    duration = data["duration_s"]
    assert duration == pytest.approx(rendered.mix.duration_s)
    assert len(data["seams"]) == len(data["songs"]) - 1 == 2
    assert len(data["peaks"]) == PEAK_PAIRS
    assert data["audio_url"] == f"/mixes/{MIX_ID}/audio"
    for song in data["songs"]:
        times = [t for t, _ in song["gain"]] + song["beats_s"] + [song["heard_from_s"]]
        times += [s[k] for s in song["sections"] for k in ("start_s", "end_s")]
        assert all(0.0 <= t <= duration + 1e-3 for t in times)
        assert all(0.0 <= g <= 1.0 for _, g in song["gain"])
    for seam, (a, b) in zip(data["seams"], zip(data["songs"], data["songs"][1:], strict=False),
                            strict=True):
        assert 0.0 < seam["start_s"] < seam["end_s"] < duration
        assert (seam["from_title"], seam["to_title"]) == (a["title"], b["title"])


def test_the_audio_is_served_whole_or_by_range(live: LiveStudio, rendered: RenderedMix) -> None:
    client = admin(live)
    data = rendered.audio.read_bytes()
    whole = client.request("GET", f"/mixes/{MIX_ID}/audio")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/mpeg"
    part = client.request("GET", f"/mixes/{MIX_ID}/audio", headers={"range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == data[1000:]
    assert part.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    head = client.request("GET", f"/mixes/{MIX_ID}/audio", headers={"range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == data[:100]
    past = client.request("GET", f"/mixes/{MIX_ID}/audio",
                          headers={"range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"


def test_the_viewer_needs_the_admin_sign_in(live: LiveStudio) -> None:
    stranger = WebClient(live.url)
    assert stranger.request("GET", "/mixes").status_code == 303
    assert stranger.request("GET", f"/mixes/{MIX_ID}").status_code == 303
    refused(stranger.request("GET", f"/mixes/{MIX_ID}/data.json"), 401, "login")
    refused(stranger.request("GET", f"/mixes/{MIX_ID}/audio"), 401, "login")
    refused(stranger.post_json(f"/mixes/{MIX_ID}/seams/1/rating", {"rating": 3}), 401, "login")


def test_an_unknown_mix_is_a_404_naming_it(live: LiveStudio) -> None:
    client = admin(live)
    for path in ("/mixes/nope", "/mixes/nope/data.json", "/mixes/nope/audio"):
        body = refused(client.request("GET", path), 404, "mix_id")
        assert "'nope'" in body["error"]
    # Only folder names the viewer lists are served: no dot files, nothing outside.
    refused(client.request("GET", "/mixes/.hidden/audio"), 404, "mix_id")
    assert client.request("GET", "/mixes/..%2F..%2Fetc/audio").status_code == 404
    refused(client.post_json("/mixes/nope/seams/1/rating", {"rating": 3}), 404, "mix_id")


def test_seam_ratings_are_recorded_and_bad_ones_refused(live: LiveStudio) -> None:
    client = admin(live)
    path = f"/mixes/{MIX_ID}/seams/{{}}/rating"
    stored = client.post_json(path.format(2), {"rating": 4})
    assert stored.status_code == 200 and stored.json() == {"mix_id": MIX_ID, "seam": 2,
                                                           "rating": 4}
    for seam in ("0", "3", "x", "-1"):
        refused(client.post_json(path.format(seam), {"rating": 3}), 422, "seam")
    for rating in (0, 6, "five", 2.5, None, True):
        refused(client.post_json(path.format(1), {"rating": rating}), 422, "rating")
    refused(client.post_json(path.format(1), {"rating": 3}, csrf=""), 403, "csrf")
    refused(client.post_json(path.format(1), {"rating": 3}, csrf="forged"), 403, "csrf")
    assert stored_ratings(live) == [(MIX_ID, 2, 4, "admin")]


def test_a_seam_is_rated_once_and_the_page_shows_the_stored_rating(live: LiveStudio) -> None:
    client = admin(live)
    assert client.post_json(f"/mixes/{MIX_ID}/seams/1/rating", {"rating": 2}).status_code == 200
    refused(client.post_json(f"/mixes/{MIX_ID}/seams/1/rating", {"rating": 5}), 409, "seam_index")
    assert stored_ratings(live) == [(MIX_ID, 1, 2, "admin")]
    page = client.request("GET", f"/mixes/{MIX_ID}").text
    assert 'id="seam-state-1">rated 2 ✓' in page
    assert 'class="rate chosen" id="rate-1-2"' in page
    assert 'id="seam-state-2"></span>' in page  # the other seam is still open


# ---- in a real browser --------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_the_viewer_plays_the_mix_follows_it_and_rates_a_seam(
    live: LiveStudio, browser: Browser,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []  # failed loads (but the favicon the Studio has none of)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.url}/admin/login")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("#sign-in")
    page.goto(f"{live.url}/mixes")
    page.click(f"a[href='/mixes/{MIX_ID}']")
    expect(page.locator("#mixview")).to_have_class(re.compile("ready"), timeout=30_000)
    expect(page.locator("#mix-play")).to_be_enabled()
    canvas = page.locator("#mix-canvas")
    page.click("#mix-play")
    page.wait_for_function(
        "() => Number(document.getElementById('mix-canvas').dataset.cursorS) > 1.0",
        timeout=15_000)
    first = float(canvas.get_attribute("data-cursor-s") or 0)
    page.wait_for_timeout(700)
    assert float(canvas.get_attribute("data-cursor-s") or 0) > first  # the cursor follows
    page.click("#mix-play")  # pause
    # A click on the timeline seeks: the middle of the canvas is the middle of the mix.
    box = canvas.bounding_box()
    assert box is not None
    canvas.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    duration = float(page.evaluate("document.getElementById('mix-audio').duration"))
    expect(page.locator("#mix-time")).not_to_have_text(re.compile(r"^0:0[0-3] "))
    cursor = float(canvas.get_attribute("data-cursor-s") or 0)
    assert abs(cursor - duration / 2) < 2.0
    page.click("#rate-1-5")
    expect(page.locator("#seam-state-1")).to_have_text("rated 5 ✓")
    expect(page.locator("#rate-1-5")).to_have_class(re.compile("chosen"))
    assert stored_ratings(live) == [(MIX_ID, 1, 5, "admin")]
    assert errors == []
    shot(page, "mix-viewer")
