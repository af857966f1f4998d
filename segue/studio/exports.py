"""Exports of the answers: training triplets for MECOMP and bliss, and everything as JSON.

Callers pass the answers to export, already filtered (flagged annotators left out or not).
The triplet CSVs hold one row per RANDOM or ACTIVE answer, in the order given: GOLD answers
are left out (one song appears twice in them: they test annotators, not songs) and so are
REPEAT answers (the same judgement again would count twice). The JSON keeps every answer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from segue.studio.model import AnsweredTriplet, TripletKind

# Kinds whose answers train the model.
TRAINING_KINDS = (TripletKind.RANDOM, TripletKind.ACTIVE)
MECOMP_HEADER = ("song1", "song2", "song3", "anchor", "positive")
BLISS_HEADER = ("song_1", "song_2", "odd_one_out")
JSON_FORMAT = "segue-studio-answers"
JSON_VERSION = 1


def training_answers(answers: Iterable[AnsweredTriplet]) -> list[AnsweredTriplet]:
    """The RANDOM and ACTIVE answers, in order (no GOLD, no REPEAT)."""
    return [a for a in answers if a.triplet.kind in TRAINING_KINDS]


def mecomp_csv(answers: Iterable[AnsweredTriplet]) -> str:
    """MECOMP's triplet CSV: `song1,song2,song3,anchor,positive`.

    The song columns are the three clips' song ids in page order; `anchor` and `positive` are
    the 1-based indices of the two clips not picked as the odd one out, the lower first.
    RANDOM and ACTIVE answers only (see the module's description).
    """
    rows = []
    for answer in training_answers(answers):
        anchor, positive = (i + 1 for i in range(3) if i != answer.pick)
        rows.append([*_song_ids(answer), str(anchor), str(positive)])
    return _csv(MECOMP_HEADER, rows)


def bliss_csv(answers: Iterable[AnsweredTriplet]) -> str:
    """bliss's triplet CSV: `song_1,song_2,odd_one_out`: the two songs not picked (page
    order), then the picked one. RANDOM and ACTIVE answers only."""
    rows = []
    for answer in training_answers(answers):
        songs = _song_ids(answer)
        kept = [s for i, s in enumerate(songs) if i != answer.pick]
        rows.append([*kept, songs[answer.pick]])
    return _csv(BLISS_HEADER, rows)


def answers_json(answers: Iterable[AnsweredTriplet], flagged: set[str] | frozenset[str]) -> str:
    """Every answer as JSON: `{"format", "version", "answers": [...]}`.

    Each answer has its annotator, session and item ids, page position, kind, clips (song id,
    start and duration in seconds), expected and model answers, pick (slot 0..2), seconds
    listened per clip, served and answered times (ISO 8601, UTC), seconds taken, and whether
    its annotator is in `flagged`.
    """
    document = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "answers": [answer_record(a, a.annotator_id in flagged) for a in answers],
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def answer_record(answer: AnsweredTriplet, flagged: bool) -> dict[str, Any]:
    """One answer as a JSON-ready dict (see `answers_json`)."""
    t = answer.triplet
    return {
        "annotator_id": answer.annotator_id,
        "session_id": answer.session_id,
        "item_id": answer.item_id,
        "position": answer.position,
        "kind": t.kind.value,
        "clips": [{"song_id": c.song_id, "start_s": c.start_s, "duration_s": c.duration_s}
                  for c in t.clips],
        "expected_odd": t.expected_odd,
        "repeat_of": t.repeat_of,
        "model_odd": t.model_odd,
        "model_margin": t.model_margin,
        "pick": answer.pick,
        "listened_s": list(answer.listened_s),
        "served_at": iso_utc(answer.served_at),
        "answered_at": iso_utc(answer.answered_at),
        "seconds": round((_utc(answer.answered_at) - _utc(answer.served_at)).total_seconds(), 3),
        "flagged": flagged,
    }


def iso_utc(moment: datetime) -> str:
    """`moment` as ISO 8601 in UTC with a `Z` (a naive datetime is taken to be UTC)."""
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime (as some databases return) is taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _song_ids(answer: AnsweredTriplet) -> list[str]:
    """The song ids of the answer's three clips, in page order."""
    return [clip.song_id for clip in answer.triplet.clips]


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """CSV text (quoted where needed, `\\n` line ends) of `header` then `rows`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


__all__ = [
    "BLISS_HEADER",
    "MECOMP_HEADER",
    "TRAINING_KINDS",
    "answer_record",
    "answers_json",
    "bliss_csv",
    "iso_utc",
    "mecomp_csv",
    "training_answers",
]
