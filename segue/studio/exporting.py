"""Answers out of the store in each export format, leaving out flagged annotators by default."""

from __future__ import annotations

from typing import Literal

from segue.studio.exports import answers_json, bliss_csv, mecomp_csv
from segue.studio.quality import QualityRules, flagged_annotators
from segue.studio.store import StudioStore

ExportFormat = Literal["mecomp", "bliss", "json"]
MEDIA_TYPES: dict[str, tuple[str, str]] = {
    "mecomp": ("text/csv; charset=utf-8", "segue-triplets-mecomp.csv"),
    "bliss": ("text/csv; charset=utf-8", "segue-triplets-bliss.csv"),
    "json": ("application/json", "segue-answers.json"),
}


def export_text(store: StudioStore, fmt: str, *, include_flagged: bool = False,
                rules: QualityRules | None = None) -> str:
    """The export in format `fmt` ("mecomp", "bliss" or "json")."""
    answers = store.answered()
    flagged = flagged_annotators(answers, rules or QualityRules())
    kept = answers if include_flagged else [a for a in answers
                                            if a.annotator_id not in flagged]
    if fmt == "mecomp":
        return mecomp_csv(kept)
    if fmt == "bliss":
        return bliss_csv(kept)
    if fmt == "json":
        return answers_json(kept, flagged)
    raise ValueError(f"unknown export format {fmt!r}")


__all__ = ["MEDIA_TYPES", "ExportFormat", "export_text"]
