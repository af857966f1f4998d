"""The embedding evaluation's no-model baseline and report: the edge-frame baseline finds a
continuation by the seam alone, and the report shows both protocols and what was left out."""

from __future__ import annotations

import numpy as np

from bench.eval_embedding import CLIP_S, SR, Clip, edge_frame, render, retrieval_ranks
from training.catalog import Track


def _cut_pairs(n: int) -> tuple[list[Clip], list[Clip]]:
    """n songs of two partials each, cut in the middle: (10 s before, 10 s after) each cut."""
    t = np.arange(2 * CLIP_S * SR) / SR
    before, after = [], []
    for i in range(n):
        song = Track(id=f"s/{i}", source="s", album="s")
        audio = (
            np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.5 * np.sin(2 * np.pi * 3000 / (i + 1) * t)
        ) * 0.2
        before.append(Clip(song, 0, audio[: CLIP_S * SR].astype(np.float32)))
        after.append(Clip(song, CLIP_S, audio[CLIP_S * SR :].astype(np.float32)))
    return before, after


def test_the_edge_frame_baseline_finds_each_continuation_by_its_seam() -> None:
    before, after = _cut_pairs(8)
    _, q_all, g_all = edge_frame(before + after)
    ranks = retrieval_ranks(q_all[: len(before)], g_all[len(before) :])
    assert ranks.tolist() == [0] * 8


def test_the_report_shows_both_protocols_and_names_what_was_left_out() -> None:
    results = {"segue": {"same_track": 0.9, "recall@1": 0.7, "ci95": {"same_track": [0.8, 0.95]}}}
    meta = {
        "eval_tracks": 3,
        "eval_minutes": 9.0,
        "sources": ["a", "b"],
        "triplet_clips": 9,
        "triplets": {"same_track": 1000},
        "cuts": 20,
        "labelled_tracks": {"mood": 0, "style": 0},
    }
    report = {
        "meta": {
            "date": "2026-12-06",
            "machine": "test",
            "trained_on": ["wesnoth"],
            "models": {"segue": {"path": "models", "version": "1"}},
            "left_out": ["musicnn: left out, its environment is missing (`make teacher-env`)"],
        },
        "protocols": {
            "source": {"meta": meta, "results": results},
            "album": {"meta": meta, "results": results},
        },
    }
    text = render(report)
    assert "## Leave-source-out" in text and "## Within training sources" in text
    assert "musicnn: left out" in text
    assert "| segue | 0.900 | n/a | n/a | n/a | 0.700 |" in text
    assert "[0.800, 0.950]" in text
