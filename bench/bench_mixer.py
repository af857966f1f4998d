"""Mixer quality and speed on real music, against a naive linear crossfade and a hard cut.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_mixer.py

For every pair of packaged immich-memories-music tracks whose tempos are within the stretch
limit (and ../shared/music/librosa recordings when present), it renders an 8-bar transition
with Segue (beat-matched, loudness-matched, bass swap, limiter), and, over the same output
time axis, a naive linear crossfade of the same length (no stretch, no loudness match) and
a hard cut at the overlap's middle. Metrics: services/mixer/quality.py. Results go to
bench/results/mixer_<date>.md and .json with the machine description.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from segue.audio import decode
from segue.v1 import mixer_pb2
from services.mixer.beatgrid import estimate_steady_grid
from services.mixer.excerpt import Excerpt
from services.mixer.limiter import true_peak_dbtp
from services.mixer.quality import (
    beat_alignment_error_ms,
    loudness_step_lu,
    measured_beat_positions,
    spectral_continuity,
)
from services.mixer.render import Params, Style, render_transition

RATE = 44100
DATE = "2026-11-21"
MAX_PAIRS = 8
OUT = Path(__file__).parent / "results"


def tracks() -> list[Path]:
    from immich_memories_music import tracks_dir

    found = sorted(Path(tracks_dir()).rglob("*electronic*.opus"))
    shared = Path(__file__).resolve().parents[2] / "shared" / "music" / "librosa"
    return found + (sorted(shared.glob("*.ogg")) if shared.is_dir() else [])


def baselines(a: np.ndarray, b: np.ndarray, r: object) -> dict[str, dict[str, float]]:
    """Naive crossfade and hard cut on the same output axis as the Segue render."""
    out: dict[str, dict[str, float]] = {}
    n = r.audio.shape[1]  # type: ignore[attr-defined]
    ov0, ov1 = r.overlap_start_s, r.overlap_end_s  # type: ignore[attr-defined]
    a_start = round((r.a_origin_s) * RATE)  # type: ignore[attr-defined]
    a_part = np.zeros((2, n), np.float32)
    seg = a[:, a_start : a_start + n]
    a_part[:, : seg.shape[1]] = seg
    b_part = np.zeros((2, n), np.float32)
    b0 = round(ov0 * RATE)
    b_start = round(r.b_start_s * RATE)  # type: ignore[attr-defined]
    seg = b[:, b_start : b_start + n - b0]
    b_part[:, b0 : b0 + seg.shape[1]] = seg
    t = np.arange(n) / RATE
    x = np.clip((t - ov0) / (ov1 - ov0), 0, 1).astype(np.float32)
    mixes = {"linear crossfade": a_part * (1 - x) + b_part * x,
             "hard cut": np.where(t < 0.5 * (ov0 + ov1), a_part, b_part).astype(np.float32)}
    b_mono = b.mean(axis=0)
    b_grid = estimate_steady_grid(b_mono, RATE).times_s
    b_beats = b_grid[(b_grid >= r.b_start_s) & (b_grid <= r.b_start_s + ov1 - ov0)]  # type: ignore[attr-defined]
    predicted = b_beats - r.b_start_s + ov0  # type: ignore[attr-defined]
    measured = measured_beat_positions(b_mono, b_beats, b_part.mean(axis=0), predicted, RATE)
    for name, mix in mixes.items():
        sc, mel = spectral_continuity(mix, RATE, ov0, ov1)
        out[name] = {
            "beat_alignment_error_ms": beat_alignment_error_ms(
                measured, r.beats_outgoing_s) if name != "hard cut" else float("nan"),  # type: ignore[attr-defined]
            "loudness_step_lu": loudness_step_lu(mix, RATE, ov0, ov1),
            "spectral_convergence": sc, "mel_mse": mel,
            "true_peak_dbtp": true_peak_dbtp(mix),
            "clipped_samples": int(np.count_nonzero(np.abs(mix) >= 1.0)),
        }
    return out


def main() -> None:
    songs = {p: decode(p, RATE, channels=2).T.copy() for p in tracks()}
    grids = {p: estimate_steady_grid(a.mean(axis=0), RATE) for p, a in songs.items()}
    pairs = [(p, q) for p, q in itertools.permutations(songs, 2)
             if abs(grids[p].bpm / grids[q].bpm - 1) <= 0.10][:MAX_PAIRS]
    rows: list[dict[str, Any]] = []
    for p, q in pairs:
        info = mixer_pb2.ExcerptInfo(encoded=True)
        ea = Excerpt("outgoing", songs[p], RATE, info)
        eb = Excerpt("incoming", songs[q], RATE, info)
        started = time.perf_counter()
        r = render_transition(ea, eb, Style("bars", bars=8, eq_bass_swap=True), Params())
        wall = time.perf_counter() - started
        rep = r.report
        ours = {"beat_alignment_error_ms": rep.beat_alignment_error_ms,
                "loudness_step_lu": rep.loudness_step_lu,
                "spectral_convergence": rep.spectral_convergence, "mel_mse": rep.mel_mse,
                "true_peak_dbtp": rep.true_peak_dbtp,
                "clipped_samples": int(np.count_nonzero(np.abs(r.audio) >= 1.0)),
                "speed_x_realtime": rep.duration_s / wall}
        rows.append({"a": p.name, "b": q.name, "duration_s": rep.duration_s, "segue": ours,
                     **baselines(songs[p], songs[q], r)})
        print(p.name, "->", q.name, json.dumps(ours))
    methods = ["segue", "linear crossfade", "hard cut"]
    keys = ["beat_alignment_error_ms", "loudness_step_lu", "spectral_convergence", "mel_mse",
            "true_peak_dbtp", "clipped_samples"]
    medians = {m: {k: statistics.median([r[m][k] for r in rows if np.isfinite(r[m][k])] or
                                        [float("nan")]) for k in keys} for m in methods}
    medians["segue"]["speed_x_realtime"] = statistics.median(
        r["segue"]["speed_x_realtime"] for r in rows)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared "
               f"with other jobs, {platform.python_version()}, OMP_NUM_THREADS="
               f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    OUT.mkdir(exist_ok=True)
    (OUT / f"mixer_{DATE}.json").write_text(json.dumps(
        {"date": DATE, "machine": machine, "pairs": rows, "medians": medians}, indent=2))
    lines = [f"# Mixer benchmark, {DATE}", "", f"Machine: {machine}", "",
             f"{len(rows)} pairs of real tracks (immich-memories-music electronic, tempos within "
             "10%), 8-bar transitions, medians:", "",
             "| metric | segue | linear crossfade | hard cut | segue / crossfade |",
             "|---|---|---|---|---|"]
    for k in keys:
        s, c, h = (medians[m][k] for m in methods)
        ratio = s / c if c else float("nan")
        lines.append(f"| {k} | {s:.3f} | {c:.3f} | {h:.3f} | {ratio:.2f} |")
    lines.append(f"| speed_x_realtime (render only) | {medians['segue']['speed_x_realtime']:.1f}"
                 " | | | |")
    (OUT / f"mixer_{DATE}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
