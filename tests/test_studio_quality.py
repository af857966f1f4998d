"""Quality control of annotators: gold accuracy, self-consistency and listening time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from segue.studio.model import AnsweredTriplet, Clip, Triplet, TripletKind
from segue.studio.quality import (
    QualityRules,
    annotator_quality,
    flagged_annotators,
    listening_ratio,
    model_agreement,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLIP_S = 12.0
HEARD = (CLIP_S, CLIP_S, CLIP_S)


def clips(*songs: str) -> tuple[Clip, Clip, Clip]:
    a, b, c = (Clip(song, 30.0 + 20.0 * i, CLIP_S) for i, song in enumerate(songs))
    return a, b, c


def answer(annotator: str, item: str, triplet: Triplet, pick: int,
           listened: tuple[float, float, float] = HEARD) -> AnsweredTriplet:
    return AnsweredTriplet(annotator, f"session-{annotator}", item, 0, triplet, pick,
                           T0, T0 + timedelta(seconds=45), listened)


def gold(annotator: str, item: str, right: bool) -> AnsweredTriplet:
    triplet = Triplet(clips("x", "x", "y"), TripletKind.GOLD, expected_odd=2)
    return answer(annotator, item, triplet, 2 if right else 0)


def repeat_pair(annotator: str, n: int, same: bool) -> list[AnsweredTriplet]:
    """An original page and its repeat (clips rotated by one); the same song picked or not."""
    original = Triplet(clips(f"a{n}", f"b{n}", f"c{n}"), TripletKind.RANDOM, model_odd=0)
    c = original.clips
    again = Triplet((c[1], c[2], c[0]), TripletKind.REPEAT, repeat_of=f"{annotator}-orig-{n}",
                    model_odd=2)
    # Picked song a{n} on the original (slot 0); on the repeat a{n} sits in slot 2.
    return [answer(annotator, f"{annotator}-orig-{n}", original, 0),
            answer(annotator, f"{annotator}-rep-{n}", again, 2 if same else 0)]


def careful(annotator: str) -> list[AnsweredTriplet]:
    return [gold(annotator, f"{annotator}-g1", True), gold(annotator, f"{annotator}-g2", True),
            gold(annotator, f"{annotator}-g3", False),
            *repeat_pair(annotator, 1, True), *repeat_pair(annotator, 2, False)]


def test_a_careful_annotator_passes_with_figures_to_show() -> None:
    [q] = annotator_quality(careful("ann"))
    assert (q.annotator_id, q.answers) == ("ann", 7)
    assert (q.gold_correct, q.gold_answers) == (2, 3)
    assert q.gold_accuracy == pytest.approx(2 / 3)
    assert (q.repeats_consistent, q.repeat_answers, q.consistency) == (1, 2, 0.5)
    assert q.listening_ratio == 1.0
    assert not q.flagged and q.reasons == ()


def test_consistency_compares_songs_not_slots() -> None:
    [same] = annotator_quality(repeat_pair("a", 1, True))
    [moved] = annotator_quality(repeat_pair("b", 1, False))
    assert same.consistency == 1.0  # slot 0 then slot 2: the same song
    assert moved.consistency == 0.0  # slot 0 both times: another song


def test_failing_gold_pages_flags_an_annotator() -> None:
    answers = [gold("g", "g1", True), gold("g", "g2", False), gold("g", "g3", False)]
    [q] = annotator_quality(answers)
    assert q.flagged
    assert q.reasons == ("gold accuracy 0.33 (1 of 3) under 0.66",)


def test_changing_ones_mind_on_every_repeat_flags_an_annotator() -> None:
    [q] = annotator_quality([*repeat_pair("r", 1, False), *repeat_pair("r", 2, False)])
    assert q.flagged and q.reasons == ("consistency 0.00 (0 of 2 repeats) under 0.50",)


def test_answering_before_hearing_the_clips_flags_an_annotator() -> None:
    triplet = Triplet(clips("a", "b", "c"), TripletKind.RANDOM)
    answers = [answer("l", f"i{n}", triplet, 0, (CLIP_S, 3.0, CLIP_S)) for n in range(3)]
    [q] = annotator_quality(answers)
    assert q.listening_ratio == pytest.approx(0.25)
    assert q.flagged and q.reasons == ("listening ratio 0.25 under 0.90",)


def test_one_slip_is_not_enough_evidence_to_flag() -> None:
    answers = [gold("s", "g1", False), *repeat_pair("s", 1, False)]
    [q] = annotator_quality(answers)
    assert q.gold_accuracy == 0.0 and q.consistency == 0.0
    assert not q.flagged  # 1 gold and 1 repeat: under the rules' minimum evidence


def test_the_rules_decide_the_thresholds() -> None:
    answers = [gold("t", "g1", True), gold("t", "g2", False)]
    assert flagged_annotators(answers) == {"t"}  # 0.5 < 0.66
    assert flagged_annotators(answers, QualityRules(min_gold_accuracy=0.5)) == set()
    assert flagged_annotators(answers, QualityRules(min_gold_answers=3)) == set()


def test_the_listening_ratio_is_a_median_capped_at_whole_clips() -> None:
    triplet = Triplet(clips("a", "b", "c"), TripletKind.RANDOM)
    answers = [answer("m", "1", triplet, 0, (20.0, 20.0, 20.0)),   # replays count as 1
               answer("m", "2", triplet, 0, (12.0, 6.0, 12.0)),    # 0.5
               answer("m", "3", triplet, 0, (12.0, 12.0, 11.0))]   # 11/12
    assert listening_ratio(answers) == pytest.approx(11 / 12)
    assert listening_ratio([]) is None


def test_a_repeat_whose_original_is_unanswered_is_not_counted() -> None:
    _, repeat = repeat_pair("u", 1, True)
    [q] = annotator_quality([repeat])
    assert (q.repeat_answers, q.consistency) == (0, None)


def test_only_failing_annotators_are_flagged_among_many() -> None:
    answers = [*careful("good"), *careful("fine"),
               gold("bad", "b1", False), gold("bad", "b2", False)]
    assert flagged_annotators(answers) == {"bad"}
    assert [q.annotator_id for q in annotator_quality(answers)] == ["bad", "fine", "good"]


def test_model_agreement_counts_random_and_active_pages_the_model_answered() -> None:
    random = Triplet(clips("a", "b", "c"), TripletKind.RANDOM, model_odd=1, model_margin=0.1)
    active = Triplet(clips("a", "b", "d"), TripletKind.ACTIVE, model_odd=0, model_margin=0.01)
    silent = Triplet(clips("a", "b", "e"), TripletKind.RANDOM)
    repeat = Triplet(clips("a", "b", "c"), TripletKind.REPEAT, repeat_of="x", model_odd=1)
    answers = [answer("p", "1", random, 1), answer("p", "2", active, 2),
               answer("p", "3", silent, 0), answer("p", "4", repeat, 1),
               gold("p", "5", True), answer("q", "6", random, 1)]
    assert model_agreement(answers) == (2, 3)
    assert model_agreement(answers, exclude={"q"}) == (1, 2)
    assert model_agreement([]) == (0, 0)
