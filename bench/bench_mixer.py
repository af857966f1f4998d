"""Mixer quality and speed on real music, against a naive linear crossfade and a hard cut.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_mixer.py

Pairs of packaged immich-memories-music electronic tracks (and ../shared/music/librosa
recordings when present) whose tempos (as the mixer reads them: the structure analysis) are
within 10%, each track leading at most one pair (so no single song dominates the medians).
For each pair it renders an 8-bar transition with Segue (beat-matched, loudness-matched,
limiter), with and without the EQ bass swap, and, over the same output time axis, a naive
linear crossfade of the same length (no stretch, no loudness match) and a hard cut at the
overlap's middle. Metrics: services/mixer/quality.py; for each pair it also records where
the default render's worst seam lies against the bass swap's ramp. Speed: a 30 s transition
rendered 5 times from new excerpts (render only, the beat analysis of both excerpts
included, one thread; the median), the WSOLA stretch against audiotsm's own WSOLA on the
same audio, and a 5-song continuous mix (each song with its whole-song analysis, as the
embedder gives it).
Results go to bench/results/mixer_<date>.md and .json with the machine description, and
plots of one transition and of the mix to bench/results/mixer_<date>_*.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from segue.audio import decode
from segue.machine import describe_machine
from segue.mixing.bass_swap import SWAP_BARS
from segue.mixing.beatgrid import analyse, estimate
from segue.mixing.errors import MixInputError
from segue.mixing.excerpt import Excerpt
from segue.mixing.limiter import true_peak_dbtp
from segue.mixing.plot import plot_transition
from segue.mixing.quality import (
    SEAM_WINDOW_S,
    beat_alignment_error_ms,
    loudness_step_lu,
    measured_beat_positions,
    spectral_continuity,
    worst_seams,
)
from segue.mixing.render import Rendered, render_transition
from segue.mixing.style import Params, Style
from segue.v1 import mixer_pb2

RATE = 44100
DATE = dt.date.today().isoformat()
OUT = Path(__file__).parent / "results"


def tracks() -> list[Path]:
    from immich_memories_music import tracks_dir

    found = sorted(Path(tracks_dir()).rglob("*electronic*.opus"))
    shared = Path(__file__).resolve().parents[2] / "shared" / "music" / "librosa"
    return found + (sorted(shared.glob("*.ogg")) if shared.is_dir() else [])


def baselines(a: np.ndarray, b: np.ndarray, r: Rendered) -> dict[str, dict[str, float]]:
    """Naive crossfade and hard cut on the same output axis as the Segue render."""
    out: dict[str, dict[str, float]] = {}
    n = r.audio.shape[1]
    ov0, ov1 = r.overlap_start_s, r.overlap_end_s
    a_start = round((r.a_origin_s) * RATE)
    a_part = np.zeros((2, n), np.float32)
    seg = a[:, a_start : a_start + n]
    a_part[:, : seg.shape[1]] = seg
    b_part = np.zeros((2, n), np.float32)
    b0 = round(ov0 * RATE)
    b_start = round(r.b_start_s * RATE)
    seg = b[:, b_start : b_start + n - b0]
    b_part[:, b0 : b0 + seg.shape[1]] = seg
    t = np.arange(n) / RATE
    x = np.clip((t - ov0) / (ov1 - ov0), 0, 1).astype(np.float32)
    mixes = {
        "linear crossfade": a_part * (1 - x) + b_part * x,
        "hard cut": np.where(t < 0.5 * (ov0 + ov1), a_part, b_part).astype(np.float32),
    }
    b_mono = b.mean(axis=0)
    b_grid = estimate(b_mono, RATE).times_s  # the grid the mixer reads, for a fair comparison
    b_beats = b_grid[(b_grid >= r.b_start_s) & (b_grid <= r.b_start_s + ov1 - ov0)]
    predicted = b_beats - r.b_start_s + ov0
    measured = measured_beat_positions(b_mono, b_beats, b_part.mean(axis=0), predicted, RATE)
    # References for the spectral metrics: each song alone over the same window, unfaded
    # (how much the music itself changes from half-second to half-second there), kept half a
    # second from where its audio starts or stops.
    pad = SEAM_WINDOW_S + 0.1
    for name, alone, lo, hi in (
        ("outgoing alone", a_part, ov0, ov1 - pad),
        ("incoming alone", b_part, ov0 + pad, ov1),
    ):
        sc, mel = spectral_continuity(alone, RATE, lo, hi)
        out[name] = {"spectral_convergence": sc, "mel_mse": mel}
    for name, mix in mixes.items():
        sc, mel = spectral_continuity(mix, RATE, ov0, ov1)
        out[name] = {
            "beat_alignment_error_ms": beat_alignment_error_ms(measured, r.beats_outgoing_s)
            if name != "hard cut"
            else float("nan"),
            "loudness_step_lu": loudness_step_lu(mix, RATE, ov0, ov1),
            "spectral_convergence": sc,
            "mel_mse": mel,
            "true_peak_dbtp": true_peak_dbtp(mix),
            "clipped_samples": int(np.count_nonzero(np.abs(mix) >= 1.0)),
        }
    return out


def where(swapped: Rendered, plain: Rendered) -> dict[str, Any]:
    """Where the worst seam (spectral convergence) lies, in bars from the overlap's start.

    With the swap's downbeat: inside the swap's ramp (give or take the half-second windows)
    it is the handover; elsewhere the bass gains stand still, so it is a song's own change.
    """
    ov0, ov1 = swapped.overlap_start_s, swapped.overlap_end_s
    bar_s = (ov1 - ov0) / 8
    worst = worst_seams(swapped.audio, RATE, ov0, ov1)
    unswapped = worst_seams(plain.audio, RATE, ov0, ov1)
    reach = 0.5 * SWAP_BARS * bar_s + SEAM_WINDOW_S
    return {
        "bass_swap_bar": (swapped.bass_swap_s - ov0) / bar_s,
        "bar": (worst.convergence_at_s - ov0) / bar_s,
        "in_swap_ramp": bool(abs(worst.convergence_at_s - swapped.bass_swap_s) <= reach),
        "bar_without_swap": (unswapped.convergence_at_s - ov0) / bar_s,
    }


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    songs = {p: decode(p, RATE, channels=2).T.copy() for p in tracks()}
    grids = {p: estimate(a.mean(axis=0), RATE) for p, a in songs.items()}
    pairs, leading = [], set()
    for p, q in itertools.permutations(songs, 2):
        if p not in leading and abs(grids[p].bpm / grids[q].bpm - 1) <= 0.10:
            pairs.append((p, q))
            leading.add(p)
    rows: list[dict[str, Any]] = []
    example: Any = None
    for p, q in pairs:
        info = mixer_pb2.ExcerptInfo(encoded=True)
        ea = Excerpt("outgoing", songs[p], RATE, info)
        eb = Excerpt("incoming", songs[q], RATE, info)
        try:
            r = render_transition(ea, eb, Style("bars", bars=8, eq_bass_swap=True), Params())
            plain = render_transition(ea, eb, Style("bars", bars=8), Params())
        except MixInputError as e:  # e.g. an excerpt too short for 8 bars
            print(p.name, "->", q.name, "skipped:", e)
            continue
        row: dict[str, Any] = {"a": p.name, "b": q.name, "duration_s": r.report.duration_s}
        for name, rendered in (("segue", r), ("segue without bass swap", plain)):
            rep = rendered.report
            row[name] = {
                "beat_alignment_error_ms": rep.beat_alignment_error_ms,
                "loudness_step_lu": rep.loudness_step_lu,
                "spectral_convergence": rep.spectral_convergence,
                "mel_mse": rep.mel_mse,
                "true_peak_dbtp": rep.true_peak_dbtp,
                "clipped_samples": int(np.count_nonzero(np.abs(rendered.audio) >= 1.0)),
            }
        row.update(baselines(songs[p], songs[q], r))
        row["worst_seam"] = where(r, plain)
        rows.append(row)
        example = example or (p, q, r)
        print(p.name, "->", q.name, json.dumps(row["segue"]))
    methods = ["segue", "segue without bass swap", "linear crossfade", "hard cut"]
    keys = [
        "beat_alignment_error_ms",
        "loudness_step_lu",
        "spectral_convergence",
        "mel_mse",
        "true_peak_dbtp",
        "clipped_samples",
    ]
    medians = {
        m: {
            k: statistics.median([r[m][k] for r in rows if np.isfinite(r[m][k])] or [float("nan")])
            for k in keys
        }
        for m in methods
    }
    alone = {
        m: {
            k: statistics.median(r[m][k] for r in rows) for k in ("spectral_convergence", "mel_mse")
        }
        for m in ("outgoing alone", "incoming alone")
    }
    speed = speed_runs(songs, pairs)
    mix = continuous_mix(songs)
    machine = (
        f"{describe_machine()} (at the end; shared with other jobs), OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    OUT.mkdir(exist_ok=True)
    if example is not None:
        p, q, r = example
        plot_transition(r, OUT / f"mixer_{DATE}_example.png", f"{p.stem} -> {q.stem}")
    (OUT / f"mixer_{DATE}.json").write_text(
        json.dumps(
            {
                "date": DATE,
                "machine": machine,
                "pairs": rows,
                "medians": medians,
                "songs_alone_medians": alone,
                "speed": speed,
                "continuous_mix": mix,
            },
            indent=2,
        )
    )
    lines = [
        f"# Mixer benchmark, {DATE}",
        "",
        f"Machine: {machine}",
        "",
        f"{len(rows)} pairs of real tracks (immich-memories-music electronic and "
        "../shared/music/librosa, tempos within 10%, each track leading at most one pair), "
        "8-bar transitions, medians:",
        "",
        "| metric | segue | segue, no bass swap | linear crossfade | hard cut | "
        "segue / crossfade |",
        "|---|---|---|---|---|---|",
    ]
    for k in keys:
        s, n, c, h = (medians[m][k] for m in methods)
        ratio = s / c if c else float("nan")
        lines.append(f"| {k} | {s:.3f} | {n:.3f} | {c:.3f} | {h:.3f} | {ratio:.2f} |")
    lines += [
        "",
        "For scale, the same worst-seam metrics on each song alone over the same window (no "
        "transition): spectral convergence "
        f"{alone['outgoing alone']['spectral_convergence']:.3f} (outgoing), "
        f"{alone['incoming alone']['spectral_convergence']:.3f} (incoming); mel MSE "
        f"{alone['outgoing alone']['mel_mse']:.1f}, {alone['incoming alone']['mel_mse']:.1f}.",
    ]
    in_ramp = sum(r["worst_seam"]["in_swap_ramp"] for r in rows)
    swap_bars = sorted(round(r["worst_seam"]["bass_swap_bar"]) for r in rows)
    lines += [
        "",
        f"Where segue's worst seam (spectral convergence) lies: inside the bass swap's "
        f"{SWAP_BARS:g}-bar ramp (or within a half-second window of it) for {in_ramp} of "
        f"{len(rows)} pairs; elsewhere, on a song's own change, for the others (per pair in "
        f"the .json, `worst_seam`). The bass was swapped this many bars into the 8-bar "
        f"overlap: {', '.join(str(b) for b in swap_bars)}.",
    ]
    lines += [
        "",
        f"Speed, {speed['output_s']:.1f} s transition ({speed['pair']}), render only, "
        f"median of {speed['runs']} runs: **{speed['x_realtime']:.1f}x real time** "
        f"({speed['render_s'] * 1000:.0f} ms wall clock); by CPU time of the one "
        f"thread, which other jobs on the shared cores do not inflate: "
        f"**{speed['x_realtime_cpu']:.1f}x** ({speed['cpu_s'] * 1000:.0f} ms). With "
        f"encoding to mp3 (wall clock): {speed['x_realtime_with_mp3']:.1f}x.",
        f"WSOLA stretch of {speed['stretch_output_s']:.0f} s of stereo audio: Segue "
        f"{speed['stretch_segue_ms']:.0f} ms, audiotsm's own WSOLA (same audio, same "
        f"speed, same run) {speed['stretch_audiotsm_ms']:.0f} ms.",
        "",
        f"Continuous mix of {len(mix['songs'])} songs ({mix['duration_s']:.0f} s): "
        f"rendered in {mix['render_s']:.1f} s ({mix['speed_x_realtime']:.0f}x real time), "
        f"{mix['loudness_lufs']:.1f} LUFS, true peak {mix['true_peak_dbtp']:.2f} dBTP.",
        "",
        "| transition | bars | tempo ratio | beat error ms | loudness step LU | "
        "spectral convergence | mel MSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in mix["transitions"]:
        rep = t["report"]
        lines.append(
            f"| {t['number']} | {rep.get('overlap_bars', 0)} | "
            f"{rep.get('tempo_ratio', 0):.3f} | {rep.get('beat_alignment_error_ms')} | "
            f"{rep.get('loudness_step_lu', 0):.2f} | "
            f"{rep.get('spectral_convergence', 0):.2f} | {rep.get('mel_mse', 0):.1f} |"
        )
    (OUT / f"mixer_{DATE}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def speed_runs(songs: dict[Path, np.ndarray], pairs: list[tuple[Path, Path]]) -> dict[str, Any]:
    """A 30 s transition (4 s + 22 s overlap + 4 s) rendered 5 times; stretch vs audiotsm."""
    from audiotsm import wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    from segue.audio import encode
    from segue.mixing.stretch import TimeMap, stretch

    p, q = pairs[0]
    info = mixer_pb2.ExcerptInfo(encoded=True)
    style = Style("seconds", seconds=22.0, eq_bass_swap=True)
    times, cpu, with_mp3 = [], [], []
    for _ in range(5):
        # New excerpts each time, as each request brings: their beat analysis is timed too.
        ea = Excerpt("outgoing", songs[p], RATE, info)
        eb = Excerpt("incoming", songs[q], RATE, info)
        started, cpu_started = time.perf_counter(), time.process_time()
        r = render_transition(ea, eb, style, Params())
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        encode(np.ascontiguousarray(r.audio.T), RATE, "mp3")
        with_mp3.append(time.perf_counter() - started)
    out_s = r.report.duration_s
    audio = songs[q][:, : 20 * RATE]
    n_out = 17 * RATE
    ours, theirs = [], []
    for _ in range(3):
        started = time.perf_counter()
        stretch(audio, RATE, TimeMap.constant(0.94), n_out)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        tsm = wsola(2, speed=0.94)
        writer = ArrayWriter(2)
        tsm.run(ArrayReader(audio[:, : int(n_out * 0.94)].astype(np.float64)), writer)
        theirs.append(time.perf_counter() - started)
    return {
        "pair": f"{p.stem} -> {q.stem}",
        "runs": len(times),
        "output_s": out_s,
        "render_s": statistics.median(times),
        "x_realtime": out_s / statistics.median(times),
        "cpu_s": statistics.median(cpu),
        "x_realtime_cpu": out_s / statistics.median(cpu),
        "x_realtime_with_mp3": out_s / statistics.median(with_mp3),
        "stretch_output_s": n_out / RATE,
        "stretch_segue_ms": 1000 * statistics.median(ours),
        "stretch_audiotsm_ms": 1000 * statistics.median(theirs),
    }


def continuous_mix(songs: dict[Path, np.ndarray]) -> dict[str, Any]:
    """Five packaged tracks as one continuous mix (entered 2 s in), with its plot."""
    from segue.mixing.continuous_mix import MixTrack, render_continuous_mix
    from segue.mixing.plot import plot_mix

    names = [
        "happy_electronic_1",
        "happy_electronic_s411",
        "happy_electronic_2",
        "tender_electronic_2",
        "energetic_electronic_s411",
    ]
    by_stem = {p.stem: a for p, a in songs.items()}
    # Each song with its whole-song analysis, as the embedder gives it (the demo's analyses).
    tracks = [
        MixTrack(
            by_stem[n],
            entry_s=0.0 if i == 0 else 2.0,
            title=n,
            song_id=n,
            analysis=analyse(by_stem[n].mean(axis=0), RATE),
        )
        for i, n in enumerate(names)
        if n in by_stem
    ]
    mix = render_continuous_mix(tracks, Style("auto", eq_bass_swap=True), Params())
    plot_mix(mix, OUT / f"mixer_{DATE}_mix.png", "bench mix")
    data: dict[str, Any] = mix.to_json()
    return data


if __name__ == "__main__":
    main()
