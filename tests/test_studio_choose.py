"""Choosing a session's triplets: random, active, gold and repeated pages, reproducibly."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from segue.studio.choose import (
    LibrarySong,
    PlannedPage,
    PlannedRepeat,
    TripletChooser,
    model_answer,
)
from segue.studio.model import Triplet, TripletKind

CLIP_S = 12.0


def library(n: int = 40, *, dims: int = 16, feel: bool = True, seed: int = 0,
            duration_s: float = 200.0) -> list[LibrarySong]:
    """`n` songs of `duration_s` seconds with random feel vectors (or none)."""
    rng = np.random.default_rng(seed)
    return [LibrarySong(f"song-{i:03d}", duration_s,
                        rng.standard_normal(dims).astype(np.float32) if feel else None)
            for i in range(n)]


def chooser(songs: list[LibrarySong] | None = None, *, seed: int = 1, clip_s: float = CLIP_S,
            active_fraction: float = 0.5, gold_every: int = 5,
            repeats: int = 2) -> TripletChooser:
    return TripletChooser(library() if songs is None else songs, clip_s=clip_s,
                          active_fraction=active_fraction, gold_every=gold_every,
                          repeats=repeats, rng=np.random.default_rng(seed))


def triplet_of(page: PlannedPage) -> Triplet:
    return page.triplet if isinstance(page, PlannedRepeat) else page


def kinds(plan: list[PlannedPage]) -> list[TripletKind]:
    return [triplet_of(page).kind for page in plan]


# ---- the model's answer -------------------------------------------------------------------
def test_the_model_calls_the_song_outside_the_closest_pair_odd() -> None:
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    b = np.array([0.9, 0.1, 0.0], dtype=np.float32)
    c = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    for order, odd in (((a, b, c), 2), ((c, a, b), 0), ((a, c, b), 1)):
        slot, margin = model_answer(list(order))
        assert slot == odd
        assert margin > 0.9  # the second-closest pair is nearly orthogonal


def test_the_margin_is_the_gap_between_the_two_closest_pairs() -> None:
    vectors = [np.random.default_rng(s).standard_normal(8).astype(np.float32) for s in range(3)]
    unit = [v / np.linalg.norm(v) for v in vectors]
    distances = sorted(1.0 - float(unit[i] @ unit[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    _, margin = model_answer(vectors)
    assert margin == pytest.approx(distances[1] - distances[0], abs=1e-6)


def test_the_model_ignores_a_vectors_length() -> None:
    vectors = [np.random.default_rng(s).standard_normal(8).astype(np.float32) for s in range(3)]
    scaled = [vectors[0] * 10, vectors[1] * 0.1, vectors[2]]
    assert model_answer(scaled) == pytest.approx(model_answer(vectors), abs=1e-6)


def test_the_model_needs_three_usable_vectors() -> None:
    v = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="3 feel vectors"):
        model_answer([v, v])
    with pytest.raises(ValueError, match="all zero"):
        model_answer([v, v, np.zeros(4, dtype=np.float32)])
    with pytest.raises(ValueError, match="length"):
        model_answer([v, v, np.ones(5, dtype=np.float32)])


# ---- the library and settings -------------------------------------------------------------
def test_fewer_than_three_songs_long_enough_is_refused_clearly() -> None:
    songs = [*library(2), LibrarySong("short-1", 5.0), LibrarySong("short-2", 11.9)]
    with pytest.raises(ValueError, match=r"3 songs of at least 12 s.*2 of its 4"):
        chooser(songs)


def test_songs_shorter_than_a_clip_are_never_played() -> None:
    songs = [*library(5), LibrarySong("short", 8.0)]
    c = chooser(songs, seed=3)
    assert c.playable == 5
    played = {clip.song_id for _ in range(20) for page in c.session_plan(15)
              for clip in triplet_of(page).clips}
    assert "short" not in played


def test_gold_pages_need_a_song_long_enough_for_two_clips() -> None:
    with pytest.raises(ValueError, match="at least 24 s"):
        chooser(library(5, duration_s=20.0))


@pytest.mark.parametrize(("songs", "match"), [
    ([*library(3), *library(1)], "unique"),
    ([*library(3), LibrarySong("other", 100.0, np.ones(3, dtype=np.float32))], "one length"),
])  # fmt: skip
def test_an_inconsistent_library_is_refused(songs: list[LibrarySong], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        chooser(songs)


@pytest.mark.parametrize(("setting", "value"), [
    ("clip_s", 0.0), ("clip_s", float("nan")), ("active_fraction", 1.5),
    ("active_fraction", -0.1), ("gold_every", 1), ("repeats", -1),
])  # fmt: skip
def test_settings_out_of_range_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ValueError, match=setting):
        chooser(**{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("song_id", "duration", "feel"), [
    ("", 100.0, None), ("a", 0.0, None), ("a", float("inf"), None),
    ("a", 100.0, np.zeros(4, dtype=np.float32)),
    ("a", 100.0, np.array([1.0, np.nan], dtype=np.float32)),
])  # fmt: skip
def test_a_library_song_must_make_sense(song_id: str, duration: float,
                                        feel: np.ndarray | None) -> None:
    with pytest.raises(ValueError):
        LibrarySong(song_id, duration, feel)


def test_a_session_has_at_least_one_page() -> None:
    with pytest.raises(ValueError, match="at least 1 page"):
        chooser().session_plan(0)
    assert len(chooser().session_plan(1)) == 1


# ---- a session's pages --------------------------------------------------------------------
def test_a_session_has_one_gold_page_per_block_and_its_repeats() -> None:
    for seed in range(20):
        plan = chooser(seed=seed).session_plan(15)
        assert len(plan) == 15
        page_kinds = kinds(plan)
        for block in range(3):
            assert page_kinds[block * 5:block * 5 + 5].count(TripletKind.GOLD) == 1
        assert page_kinds.count(TripletKind.REPEAT) == 2
        fresh = 15 - 3 - 2
        assert page_kinds.count(TripletKind.ACTIVE) == round(0.5 * fresh)


def test_a_repeat_shows_an_earlier_page_again_with_every_clip_moved() -> None:
    for seed in range(20):
        plan = chooser(seed=seed).session_plan(15)
        repeats = [(p, page) for p, page in enumerate(plan) if isinstance(page, PlannedRepeat)]
        originals = [page.of_position for _, page in repeats]
        assert len(set(originals)) == len(originals)
        for position, repeat in repeats:
            original = plan[repeat.of_position]
            assert isinstance(original, Triplet)
            assert repeat.of_position < position
            assert original.kind in (TripletKind.RANDOM, TripletKind.ACTIVE)
            again = repeat.triplet
            assert again.kind is TripletKind.REPEAT and again.repeat_of is None
            assert sorted(again.clips, key=str) == sorted(original.clips, key=str)
            assert all(again.clips[i] != original.clips[i] for i in range(3))
            assert original.model_odd is not None and again.model_odd is not None
            assert again.clips[again.model_odd] == original.clips[original.model_odd]
            assert again.model_margin == original.model_margin


def test_a_repeat_comes_in_the_later_half_a_few_pages_after_its_original() -> None:
    for seed in range(20):
        plan = chooser(seed=seed).session_plan(15)
        for position, page in enumerate(plan):
            if isinstance(page, PlannedRepeat):
                assert position >= 15 // 2 - 1
                assert position - page.of_position >= 3


def test_a_repeat_becomes_its_triplet_once_the_original_is_stored() -> None:
    plan = chooser().session_plan(15)
    repeat = next(page for page in plan if isinstance(page, PlannedRepeat))
    stored = repeat.resolve("item-42")
    assert stored.repeat_of == "item-42"
    assert stored.clips == repeat.triplet.clips and stored.kind is TripletKind.REPEAT


def test_a_short_session_holds_as_many_repeats_as_fit() -> None:
    # 6 pages with a gold page in every 2 leave 3 pages: room for one original and its repeat.
    for seed in range(10):
        page_kinds = kinds(chooser(seed=seed, gold_every=2, repeats=2).session_plan(6))
        assert page_kinds.count(TripletKind.GOLD) == 3
        assert page_kinds.count(TripletKind.REPEAT) == 1


def test_gold_pages_hold_two_separate_clips_of_one_song_and_the_known_odd_one() -> None:
    songs = {s.song_id: s for s in library()}
    gold = [t for seed in range(10) for page in chooser(seed=seed).session_plan(15)
            if (t := triplet_of(page)).kind is TripletKind.GOLD]
    assert {t.expected_odd for t in gold} == {0, 1, 2}  # the odd clip is in any slot
    for t in gold:
        assert t.expected_odd is not None and t.model_odd is None
        odd = t.clips[t.expected_odd]
        pair = [c for i, c in enumerate(t.clips) if i != t.expected_odd]
        assert pair[0].song_id == pair[1].song_id != odd.song_id
        assert abs(pair[0].start_s - pair[1].start_s) >= CLIP_S  # they never overlap
        for clip in pair:
            assert 0.0 <= clip.start_s <= songs[clip.song_id].duration_s - CLIP_S


def test_gold_clips_fit_a_song_just_long_enough_for_two() -> None:
    songs = [LibrarySong("long", 25.0), *library(4, duration_s=20.0, feel=False)]
    gold = [t for seed in range(10)
            for page in chooser(songs, seed=seed, gold_every=2).session_plan(4)
            if (t := triplet_of(page)).kind is TripletKind.GOLD]
    assert len(gold) == 20
    for t in gold:
        starts = sorted(c.start_s for c in t.clips if c.song_id == "long")
        assert starts[0] >= 0.0 and starts[1] - starts[0] >= CLIP_S
        assert starts[1] + CLIP_S <= 25.0


def test_clips_skip_the_first_and_last_tenth_of_a_long_song() -> None:
    plan = [triplet_of(p) for seed in range(5) for p in chooser(seed=seed).session_plan(15)]
    for t in plan:
        for clip in t.clips:
            assert clip.duration_s == CLIP_S
            assert clip.start_s >= 20.0 and clip.start_s + CLIP_S <= 180.0
            assert clip.start_s * 1000 == pytest.approx(round(clip.start_s * 1000))  # whole ms


def test_a_short_song_gives_clips_near_its_middle() -> None:
    songs = [*library(3, feel=False, duration_s=13.0), LibrarySong("gold-able", 100.0)]
    for seed in range(10):
        for page in chooser(songs, seed=seed).session_plan(10):
            for clip in triplet_of(page).clips:
                if clip.song_id != "gold-able":
                    assert clip.start_s == 0.5  # 13 s: the middle 12 s, not the middle 80%


def test_random_pages_hold_three_songs_drawn_uniformly() -> None:
    songs = library(10, feel=False)
    counts: Counter[str] = Counter()
    for seed in range(40):
        plan = chooser(songs, seed=seed, active_fraction=0.0, repeats=0).session_plan(15)
        for page in plan:
            t = triplet_of(page)
            if t.kind is TripletKind.RANDOM:
                assert len({c.song_id for c in t.clips}) == 3
                counts.update(c.song_id for c in t.clips)
    expected = sum(counts.values()) / 10
    assert set(counts) == {s.song_id for s in songs}
    assert all(abs(n - expected) < 0.25 * expected for n in counts.values())


def test_pages_carry_the_models_answer_where_the_songs_have_feel_vectors() -> None:
    songs = library()
    feels = {s.song_id: s.feel for s in songs}
    for page in chooser(songs).session_plan(30):
        t = triplet_of(page)
        if t.kind in (TripletKind.RANDOM, TripletKind.ACTIVE):
            vectors = [feels[c.song_id] for c in t.clips]
            odd, margin = model_answer([v for v in vectors if v is not None])
            assert t.model_odd == odd
            assert t.model_margin == pytest.approx(margin, abs=1e-6)


def test_active_pages_are_where_the_model_is_least_sure() -> None:
    songs = library(200, seed=4)
    active = [triplet_of(p) for p in chooser(songs, active_fraction=1.0, repeats=0)
              .session_plan(20) if triplet_of(p).kind is TripletKind.ACTIVE]
    random = [triplet_of(p) for p in chooser(songs, active_fraction=0.0, repeats=0)
              .session_plan(200) if triplet_of(p).kind is TripletKind.RANDOM]
    assert len(active) == 16
    active_margins = [t.model_margin for t in active if t.model_margin is not None]
    random_margins = [t.model_margin for t in random if t.model_margin is not None]
    assert max(active_margins) < np.percentile(random_margins, 5)
    assert len({frozenset(c.song_id for c in t.clips) for t in active}) == 16  # all different


def test_without_feel_vectors_every_fresh_page_is_random_and_the_model_silent() -> None:
    plan = chooser(library(feel=False), active_fraction=1.0).session_plan(15)
    assert TripletKind.ACTIVE not in kinds(plan)
    assert all(triplet_of(page).model_odd is None for page in plan)


def test_active_pages_in_a_tiny_library_reuse_its_few_triples() -> None:
    plan = chooser(library(3), active_fraction=1.0, repeats=0).session_plan(10)
    assert kinds(plan).count(TripletKind.ACTIVE) == 8


def test_the_same_seed_gives_the_same_session_and_another_seed_another() -> None:
    assert chooser(seed=7).session_plan(15) == chooser(seed=7).session_plan(15)
    assert chooser(seed=7).session_plan(15) != chooser(seed=8).session_plan(15)
