"""The real-composition evaluation's scoring and its stretched/shifted copies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.eval_midi import (
    beat_metrics,
    boundary_metrics,
    level_breakdown,
    level_lines,
    tempo_relation,
)
from bench.eval_transforms import (
    SR,
    STRETCHES,
    TEMPO_RATIOS,
    Reading,
    segue_reading,
    shift_pitch,
    summarise,
    transform_row,
)
from bench.eval_transforms import report_lines as transform_lines
from devkit.synth import generate_song


def test_a_half_tempo_grid_fails_continuity_at_the_correct_level_but_not_any_level() -> None:
    ref = np.arange(0.0, 60.0, 0.5)  # 120 BPM
    half = np.arange(0.0, 60.0, 1.0)
    scores = beat_metrics(ref, half, 120.0, 60.0)
    assert scores["acc1"] == 0.0 and scores["acc2"] == 1.0
    assert scores["cmlt"] == 0.0 and scores["amlt"] > 0.95
    exact = beat_metrics(ref, ref, 120.0, 120.0)
    assert exact["f_measure"] == exact["cmlt"] == exact["acc1"] == 1.0


def test_a_drifting_grid_loses_continuity_after_it_leaves_the_tolerance() -> None:
    ref = np.arange(0.0, 60.0, 0.5)
    drifting = ref * 1.01  # 1% slow: 0.3 s late by the end
    scores = beat_metrics(ref, drifting, 120.0, 120.0 / 1.01)
    assert scores["acc1"] == 1.0  # the tempo is within 4%...
    assert scores["cmlt"] < 0.7  # ...but the grid drifts off the beats


def test_boundaries_within_three_seconds_count_for_hr3f_but_not_hr05f() -> None:
    reference = np.array([[0.0, 20.0], [20.0, 40.0], [40.0, 60.0]])
    scores = boundary_metrics(reference, [21.5, 38.0], 60.0)
    assert scores["hr3f"] == 1.0 and scores["hr05f"] == 0.0


@pytest.mark.parametrize("how", list(STRETCHES))
def test_a_tempo_copy_is_shorter_by_the_ratio_and_keeps_its_pitch(how: str) -> None:
    t = np.arange(4 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    fast = STRETCHES[how](tone, 1.08)
    # WSOLA leaves out the last partial frame (under 0.1 s).
    assert len(fast) == pytest.approx(len(tone) / 1.08, abs=0.1 * SR)
    spectrum = np.abs(np.fft.rfft(fast[SR : 2 * SR]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins


def test_a_pitch_copy_moves_by_the_semitones_and_keeps_its_length() -> None:
    t = np.arange(4 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    up = shift_pitch(tone, 3)
    assert len(up) == len(tone)
    spectrum = np.abs(np.fft.rfft(up[SR : 2 * SR]))
    assert np.argmax(spectrum) == pytest.approx(440 * 2 ** (3 / 12), abs=3)


@pytest.mark.parametrize(
    ("bpm", "relation"),
    [
        (121.0, "labelled level"),
        (236.0, "2:1 or 1:2"),
        (62.0, "2:1 or 1:2"),
        (160.0, "3:2, 4:3 or inverse"),
        (81.0, "3:2, 4:3 or inverse"),
        (100.0, "other"),
        (0.0, "other"),
    ],
)
def test_a_tempo_reading_is_classed_by_its_relation_to_the_labelled_tempo(
    bpm: float, relation: str
) -> None:
    assert tempo_relation(120.0, bpm) == relation


def test_the_level_breakdown_sums_each_trackers_beat_f_loss_by_relation() -> None:
    def row(ours: tuple[float, float], peer: tuple[float, float]) -> dict[str, Any]:
        readings = {"ours": ours, "librosa": peer, "essentia": peer, "madmom": peer}
        entry: dict[str, Any] = {"bpm": 120.0}
        for who, (bpm, f) in readings.items():
            entry[who] = {"bpm": bpm, "f_measure": f}
        return entry

    rows = [
        row((120.0, 0.9), (60.0, 0.66)),
        row((160.0, 0.3), (120.0, 1.0)),
        row((120.0, 0.0), (120.0, 0.5)),
    ]
    breakdown = level_breakdown(rows)
    counts = {k: n for k, (n, _) in breakdown["ours"].items()}
    losses = {k: round(loss, 6) for k, (_, loss) in breakdown["ours"].items()}
    assert counts == {"labelled level": 2, "2:1 or 1:2": 0, "3:2, 4:3 or inverse": 1, "other": 0}
    assert losses == {"labelled level": 1.1, "2:1 or 1:2": 0.0, "3:2, 4:3 or inverse": 0.7,
                      "other": 0.0}
    assert round(breakdown["essentia"]["2:1 or 1:2"][1], 6) == 0.34
    assert "| Segue | 2: 1.1 | 0: 0.0 | 1: 0.7 | 0: 0.0 | 1.8 |" in level_lines(breakdown)


def test_each_reader_is_checked_on_the_same_copies_and_reported_beside_segue() -> None:
    song = generate_song(23, duration_s=40, tempo_bpm=124.0, instrumentation="electronic")
    # A second reader that reads a third faster: its tempo ratios still hold, as the check
    # compares each reader's copies with its own original.
    def faster(audio: np.ndarray) -> Reading:
        r = segue_reading(audio)
        return Reading(r.bpm * 4 / 3, r.tonic, r.mode)

    row = transform_row("song", song.audio, {"ours": segue_reading, "twin": faster})
    ours, twin = row["ours"], row["twin"]
    assert ours["bpm"] == pytest.approx(124.0, rel=0.02)
    assert twin["bpm"] == pytest.approx(124.0 * 4 / 3, rel=0.02)
    assert [c["ratio"] for c in ours["tempo"]] == list(TEMPO_RATIOS)
    assert all(c["ok"] for c in ours["tempo"] + twin["tempo"] + ours["pitch"])
    summary = summarise([row])
    assert summary["ours"]["tempo_ok"] == 1.0 and summary["twin"]["key_copies"] == 2
    table = "\n".join(transform_lines(summary, [row]))
    assert "| check | copies | Segue | twin | target | met |" in table
    assert "| tempo ratio within 2% | 2 | 100.0% | 100.0% | >= 95% | yes |" in table
    # Every stretch's copies are read; the first is the check, the others a second row.
    assert list(ours["tempo_other"]) == list(STRETCHES)[1:] == ["wsola"]
    assert [c["ratio"] for c in ours["tempo_other"]["wsola"]] == list(TEMPO_RATIOS)
    assert "| the same, wsola copies (earlier runs' stretch) | 2 | 100.0% | 100.0% | - | - |" \
        in table


def test_the_copies_table_keeps_its_columns_without_peers() -> None:
    summary = {"ours": {"tempo_ok": 0.5, "key_ok": 1.0, "tempo_copies": 2, "key_copies": 2}}
    row = {"name": "song", "ours": {"bpm": 100.0, "key": "C major", "tempo": [], "pitch": []}}
    table = transform_lines(summary, [row])
    assert "| check | copies | Segue | target | met |" in table
    assert "| tempo ratio within 2% | 2 | 50.0% | >= 95% | NO |" in table


def test_a_tempo_only_reader_gets_the_tempo_copies_and_no_key_share() -> None:
    song = generate_song(29, duration_s=40, tempo_bpm=110.0, instrumentation="electronic")
    shifted: list[np.ndarray] = []

    def beats_only(audio: np.ndarray) -> Reading:
        shifted.append(audio)
        return Reading(segue_reading(audio).bpm, None, None)

    row = transform_row("song", song.audio, {"ours": segue_reading, "beats": beats_only})
    # The original and the stretched copies only: the transposed copies are not read.
    assert len(shifted) == 1 + len(STRETCHES) * len(TEMPO_RATIOS)
    assert row["beats"]["key"] == "-" and row["beats"]["pitch"] == []
    assert [c["ratio"] for c in row["beats"]["tempo"]] == list(TEMPO_RATIOS)
    summary = summarise([row])
    assert summary["beats"]["key_copies"] == 0 and np.isnan(summary["beats"]["key_ok"])
    table = transform_lines(summary, [row])
    key_line = next(line for line in table if line.startswith("| key moved"))
    assert "| 2 | 100.0% | - | >= 95% |" in key_line
