"""Exports of the answers: MECOMP's and bliss's triplet CSVs, and every answer as JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone

from segue.studio.exports import answers_json, bliss_csv, iso_utc, mecomp_csv
from segue.studio.model import AnsweredTriplet, Clip, Triplet, TripletKind

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def clips(*songs: str) -> tuple[Clip, Clip, Clip]:
    a, b, c = (Clip(song, 10.0 * (i + 1), 12.0) for i, song in enumerate(songs))
    return a, b, c


def answered(item: str, triplet: Triplet, pick: int, annotator: str = "ann-1",
             position: int = 0) -> AnsweredTriplet:
    return AnsweredTriplet(annotator, "sess-1", item, position, triplet, pick,
                           T0 + timedelta(minutes=position),
                           T0 + timedelta(minutes=position, seconds=41.5), (12.0, 12.5, 12.0))


RANDOM = Triplet(clips("song a", "song b", "song c"), TripletKind.RANDOM, model_odd=2,
                 model_margin=0.05)
# Song ids are the matcher's: anything a CSV must quote survives.
ACTIVE = Triplet(clips('quote "q"', "comma, c", "line\nbreak"), TripletKind.ACTIVE, model_odd=0,
                 model_margin=0.001)
GOLD = Triplet(clips("song a", "song d", "song a"), TripletKind.GOLD, expected_odd=1)
REPEAT = Triplet(clips("song b", "song c", "song a"), TripletKind.REPEAT, repeat_of="i1",
                 model_odd=1, model_margin=0.05)

ANSWERS = [
    answered("i1", RANDOM, pick=0, position=0),
    answered("i2", GOLD, pick=1, position=1),
    answered("i3", ACTIVE, pick=1, position=2),
    answered("i4", REPEAT, pick=2, position=3),
    answered("i5", RANDOM, pick=2, annotator="ann-2", position=0),
]


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_mecomp_rows_name_the_songs_and_the_two_that_belong_together() -> None:
    assert rows(mecomp_csv(ANSWERS)) == [
        ["song1", "song2", "song3", "anchor", "positive"],
        ["song a", "song b", "song c", "2", "3"],         # song a picked: 2 and 3 remain
        ['quote "q"', "comma, c", "line\nbreak", "1", "3"],
        ["song a", "song b", "song c", "1", "2"],
    ]


def test_bliss_rows_name_the_two_kept_songs_then_the_odd_one_out() -> None:
    assert rows(bliss_csv(ANSWERS)) == [
        ["song_1", "song_2", "odd_one_out"],
        ["song b", "song c", "song a"],
        ['quote "q"', "line\nbreak", "comma, c"],
        ["song a", "song b", "song c"],
    ]


def test_triplet_csvs_leave_out_gold_and_repeat_pages() -> None:
    for export in (mecomp_csv, bliss_csv):
        text = export(ANSWERS)
        assert "song d" not in text          # only in the gold page
        assert len(rows(text)) == 1 + 3      # header and the RANDOM and ACTIVE answers


def test_empty_exports_still_have_their_header() -> None:
    assert mecomp_csv([]) == "song1,song2,song3,anchor,positive\n"
    assert bliss_csv([]) == "song_1,song_2,odd_one_out\n"


def test_json_keeps_every_answer_with_its_flag() -> None:
    document = json.loads(answers_json(ANSWERS, flagged={"ann-2"}))
    assert (document["format"], document["version"]) == ("segue-studio-answers", 1)
    records = document["answers"]
    assert [r["item_id"] for r in records] == ["i1", "i2", "i3", "i4", "i5"]
    assert [r["kind"] for r in records] == ["random", "gold", "active", "repeat", "random"]
    assert [r["flagged"] for r in records] == [False, False, False, False, True]
    assert records[1]["expected_odd"] == 1 and records[3]["repeat_of"] == "i1"


def test_json_round_trips_to_the_answers() -> None:
    records = json.loads(answers_json(ANSWERS, flagged=set()))["answers"]
    for record, original in zip(records, ANSWERS, strict=True):
        triplet = Triplet(
            tuple(Clip(c["song_id"], c["start_s"], c["duration_s"])  # type: ignore[arg-type]
                  for c in record["clips"]),
            TripletKind(record["kind"]), record["expected_odd"], record["repeat_of"],
            record["model_odd"], record["model_margin"])
        rebuilt = AnsweredTriplet(
            record["annotator_id"], record["session_id"], record["item_id"],
            record["position"], triplet, record["pick"],
            datetime.fromisoformat(record["served_at"]),
            datetime.fromisoformat(record["answered_at"]),
            tuple(record["listened_s"]))
        assert rebuilt == original
        assert record["seconds"] == 41.5


def test_times_are_iso_8601_in_utc() -> None:
    record = json.loads(answers_json(ANSWERS[:1], flagged=set()))["answers"][0]
    assert record["served_at"] == "2026-03-01T12:00:00Z"
    assert record["answered_at"] == "2026-03-01T12:00:41.500000Z"
    paris = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 3, 1, 13, 0, tzinfo=paris)) == "2026-03-01T12:00:00Z"
    assert iso_utc(datetime(2026, 3, 1, 12, 0)) == "2026-03-01T12:00:00Z"  # naive: UTC
