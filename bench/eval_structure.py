"""Structure analysis against librosa baselines on generated songs, splice composites and
real recordings, scored with mir_eval; writes bench/results/structure_eval.{md,json}.

    python bench/eval_structure.py [--songs 24] [--composites 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import librosa
import mir_eval
import numpy as np
from immich_memories_music import tracks_dir

from segue.structure import StructureAccumulator, analyze_audio
from segue.structure.camelot import key_name
from segue.structure.key import krumhansl_key
from segue.structure.splice import load_mono, splice
from segue.synth import generate_song

SR = 22050
ROOT = Path(__file__).resolve().parents[1]
SHARED_MUSIC = ROOT.parent / "shared" / "music" / "librosa"
SHARED_PEER = ROOT.parent / "shared" / "peers" / "mecomp_audio_embedding_model.onnx"
RESULTS = ROOT / "bench" / "results"


def beat_scores(ref: np.ndarray, est: np.ndarray) -> dict[str, float]:
    ref, est = mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(np.asarray(est))
    if len(est) < 2:
        return {"f_measure": 0.0, "cemgil": 0.0}
    return {
        "f_measure": float(mir_eval.beat.f_measure(ref, est)),
        "cemgil": float(mir_eval.beat.cemgil(ref, est)[0]),
    }


def tempo_acc1(true_bpm: float, est_bpm: float) -> float:
    return float(abs(est_bpm / true_bpm - 1.0) <= 0.04) if est_bpm > 0 else 0.0


def tempo_acc2(true_bpm: float, est_bpm: float) -> float:
    return float(any(tempo_acc1(true_bpm, est_bpm * f) for f in (0.5, 1, 2, 1 / 3, 3)))


def hr3(boundaries: np.ndarray, estimated: list[float], duration: float) -> float:
    ref = np.c_[boundaries[:-1], boundaries[1:]]
    edges = np.asarray([0.0, *[t for t in estimated if 0 < t < duration], duration])
    est = np.c_[edges[:-1], edges[1:]]
    return float(mir_eval.segment.detection(ref, est, window=3.0, trim=True)[2])


def librosa_beats(audio: np.ndarray) -> tuple[float, np.ndarray]:
    tempo, frames = librosa.beat.beat_track(y=audio, sr=SR, hop_length=512)
    return float(np.atleast_1d(tempo)[0]), librosa.frames_to_time(frames, sr=SR, hop_length=512)


def librosa_boundaries(audio: np.ndarray, n_segments: int) -> list[float]:
    """Agglomerative segmentation on stacked chroma + MFCC (librosa.segment.agglomerative)."""
    chroma = librosa.feature.chroma_cqt(y=audio, sr=SR, hop_length=2048)
    mfcc = librosa.feature.mfcc(y=audio, sr=SR, hop_length=2048, n_mfcc=13)
    n = min(chroma.shape[1], mfcc.shape[1])
    stacked = np.vstack(
        [librosa.util.normalize(chroma[:, :n]), librosa.util.normalize(mfcc[:, :n])]
    )
    bounds = librosa.segment.agglomerative(stacked, max(2, min(n_segments, n)))
    return [float(t) for t in librosa.frames_to_time(bounds, sr=SR, hop_length=2048)[1:]]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def overhead(audio: np.ndarray) -> dict[str, float]:
    """Per-window push cost (with model-style mel frames and without) and final analysis cost."""
    windows = [audio[i : i + SR] for i in range(0, len(audio), SR)]
    rng = np.random.default_rng(0)
    mels = [rng.standard_normal((44, 64)).astype(np.float32) for _ in windows]
    out: dict[str, list[float]] = {"push_mel_us": [], "push_pcm_us": [], "analyze_ms": []}
    for _ in range(3):
        state = StructureAccumulator(SR)
        t = time.perf_counter()
        for w, m in zip(windows, mels, strict=True):
            state.push(w, m)
        out["push_mel_us"].append((time.perf_counter() - t) / len(windows) * 1e6)
        state = StructureAccumulator(SR)
        t = time.perf_counter()
        for w in windows:
            state.push(w)
        out["push_pcm_us"].append((time.perf_counter() - t) / len(windows) * 1e6)
        t = time.perf_counter()
        state.analyze()
        out["analyze_ms"].append((time.perf_counter() - t) * 1e3)
    result = {k: median(v) for k, v in out.items()}
    result["song_s"] = len(audio) / SR
    if SHARED_PEER.exists():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(
            str(SHARED_PEER), options, providers=["CPUExecutionProvider"]
        )
        batch = np.stack([np.pad(w, (0, SR - len(w))) for w in windows]).astype(np.float32)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for row in batch:
                session.run(None, {"audio": row[None, :]})
            times.append((time.perf_counter() - t) / len(batch) * 1e6)
        result["peer_model_us_per_window"] = median(times)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=24)
    parser.add_argument("--composites", type=int, default=12)
    args = parser.parse_args()
    rows: dict[str, Any] = {"generated": [], "composites": [], "real": []}

    for i in range(args.songs):
        song = generate_song(
            1000 + i,
            duration_s=float([45, 60, 90][i % 3]),
            swing=[0.0, 0.3, 0.6][(i // 3) % 3],
            rubato=i % 4 == 3,
        )
        ours = analyze_audio(song.audio, SR)
        lib_bpm, lib_beats = librosa_beats(song.audio)
        lib_bounds = librosa_boundaries(song.audio, len(song.sections))
        tonic, mode = krumhansl_key(*_chroma_of(song.audio))
        rows["generated"].append(
            {
                "seed": song.seed,
                "tempo": song.tempo_bpm,
                "instrumentation": song.instrumentation,
                "swing": song.swing,
                "rubato": song.rubato,
                "key": song.key_name,
                "ours": {
                    **beat_scores(song.beat_times_s, np.asarray(ours.beat_times_s)),
                    "acc1": tempo_acc1(song.tempo_bpm, ours.tempo_bpm),
                    "acc2": tempo_acc2(song.tempo_bpm, ours.tempo_bpm),
                    "key": float(mir_eval.key.weighted_score(song.key_name, ours.key.name)),
                    "downbeat_f": float(
                        mir_eval.beat.f_measure(
                            song.downbeat_times_s, np.asarray(ours.downbeat_times_s)
                        )
                    )
                    if ours.downbeat_times_s
                    else 0.0,
                    "hr3": hr3(
                        song.boundaries_s, [s.start_s for s in ours.sections[1:]], ours.duration_s
                    ),
                },
                "baseline": {
                    **beat_scores(song.beat_times_s, lib_beats),
                    "acc1": tempo_acc1(song.tempo_bpm, lib_bpm),
                    "acc2": tempo_acc2(song.tempo_bpm, lib_bpm),
                    "key": float(mir_eval.key.weighted_score(song.key_name, key_name(tonic, mode))),
                    "hr3": hr3(song.boundaries_s, lib_bounds, song.duration_s),
                },
            }
        )

    sources = sorted(tracks_dir().rglob("*.opus"))
    if SHARED_MUSIC.exists():
        sources += sorted(SHARED_MUSIC.glob("*.ogg"))
    recordings = [(p.name, load_mono(p)) for p in sources]
    rng = np.random.default_rng(2026)
    for _ in range(args.composites):
        picks = rng.choice(len(recordings), size=4, replace=False)
        lengths = rng.uniform(10.0, 20.0, size=4)
        usable = [
            (recordings[k], float(min(lengths[j], len(recordings[k][1]) / SR - 1.0)))
            for j, k in enumerate(picks)
        ]
        comp = splice([u[0] for u in usable], [u[1] for u in usable], rng)
        ours = analyze_audio(comp.audio, SR)
        lib_bounds = librosa_boundaries(comp.audio, len(comp.boundaries_s) - 1)
        rows["composites"].append(
            {
                "sources": list(comp.sources),
                "ours": {
                    "hr3": hr3(
                        comp.boundaries_s, [s.start_s for s in ours.sections[1:]], ours.duration_s
                    )
                },
                "baseline": {"hr3": hr3(comp.boundaries_s, lib_bounds, len(comp.audio) / SR)},
            }
        )

    for name, audio in recordings:
        ours = analyze_audio(audio, SR)
        lib_bpm, lib_beats = librosa_beats(audio)
        ours_beats = np.asarray(ours.beat_times_s)
        agreement = beat_scores(lib_beats, ours_beats)["f_measure"] if len(lib_beats) > 2 else 0.0
        rows["real"].append(
            {
                "name": name,
                "ours_bpm": ours.tempo_bpm,
                "librosa_bpm": lib_bpm,
                "beat_agreement_f": agreement,
                "key": ours.key.name,
                "key_confidence": ours.key.confidence,
                "sections": [s.letter for s in ours.sections],
            }
        )

    cost = overhead(generate_song(7, duration_s=180).audio)
    write_report(rows, cost, args)


def _chroma_of(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    state = StructureAccumulator(SR)
    for i in range(0, len(audio), SR):
        state.push(audio[i : i + SR])
    features = state.features()
    return features.chroma, features.level_db


def _mean(rows: list[dict[str, Any]], who: str, metric: str) -> float:
    return float(np.mean([r[who][metric] for r in rows])) if rows else float("nan")


def write_report(rows: dict[str, Any], cost: dict[str, float], args: argparse.Namespace) -> None:
    gen, comp = rows["generated"], rows["composites"]
    summary: dict[str, Any] = {
        "generated": {
            m: {"ours": _mean(gen, "ours", m), "librosa": _mean(gen, "baseline", m)}
            for m in ("f_measure", "cemgil", "acc1", "acc2", "key", "hr3")
        },
        "composites": {
            "hr3": {"ours": _mean(comp, "ours", "hr3"), "librosa": _mean(comp, "baseline", "hr3")}
        },
        "downbeat_f_ours": _mean(gen, "ours", "downbeat_f"),
        "cost": cost,
    }
    targets = {
        ("generated", "f_measure"): 0.90,
        ("generated", "acc1"): 0.90,
        ("generated", "key"): 0.85,
        ("generated", "hr3"): 0.70,
        ("composites", "hr3"): 0.80,
    }
    date = "2026-11-21"
    lines = [
        "# Structure analysis evaluation",
        "",
        f"Date: {date}. Machine: {machine()}. One run, everything side by side; "
        f"{len(gen)} generated songs, {len(comp)} splice composites, "
        f"{len(rows['real'])} real recordings.",
        "Baselines: beats and tempo `librosa.beat.beat_track`; sections librosa agglomerative "
        "segmentation on chroma+MFCC with the true number of segments (an advantage); key plain "
        "Krumhansl-Schmuckler on the same chroma.",
        "",
        "| set | metric | Segue | librosa / K-S | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for (group, metric), target in targets.items():
        ours = summary[group][metric]["ours"]
        base = summary[group][metric]["librosa"]
        lines.append(
            f"| {group} | {metric} | {ours:.3f} | {base:.3f} | >= {target} | "
            f"{'yes' if ours >= target else 'NO'} |"
        )
    for metric in ("cemgil", "acc2"):
        m = summary["generated"][metric]
        lines.append(
            f"| generated | {metric} | {m['ours']:.3f} | {m['librosa']:.3f} | beat baseline | "
            f"{'yes' if m['ours'] >= m['librosa'] else 'NO'} |"
        )
    lines.append(f"| generated | downbeat F | {summary['downbeat_f_ours']:.3f} | - | - | - |")
    lines += [
        "",
        "## Cost (180 s generated song, medians of 3 runs, one thread)",
        "",
        f"- push with model mel frames: {cost['push_mel_us']:.0f} µs per 1 s window",
        f"- push computing own log-mel: {cost['push_pcm_us']:.0f} µs per window",
        f"- final analysis: {cost['analyze_ms']:.1f} ms per song "
        f"({cost['analyze_ms'] / cost['song_s'] * 1e3:.0f} µs per second of audio)",
    ]
    if "peer_model_us_per_window" in cost:
        per_window_total = cost["push_mel_us"] + cost["analyze_ms"] * 1e3 / cost["song_s"]
        lines.append(
            "- peer model (MECOMP ONNX, batch 1, 1 thread): "
            f"{cost['peer_model_us_per_window']:.0f} µs per window; "
            f"structure adds {per_window_total / cost['peer_model_us_per_window']:.0%} to it "
            f"(target <= 10% of the Segue model's ~300 µs: {per_window_total / 300 * 100:.0f}%)"
        )
    lines += [
        "",
        "## Real recordings (no ground truth: agreement with librosa beats, sanity)",
        "",
        "| recording | Segue BPM | librosa BPM | beat agreement F | key (confidence) | sections |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows["real"]:
        lines.append(
            f"| {r['name'][:48]} | {r['ours_bpm']:.1f} | {r['librosa_bpm']:.1f} | "
            f"{r['beat_agreement_f']:.2f} | {r['key']} ({r['key_confidence']:.2f}) | "
            f"{' '.join(r['sections'])} |"
        )
    lines += [
        "",
        "## Generated songs",
        "",
        "| seed | BPM | instr | swing | rubato | F ours/lib | key ours/KS | HR3 ours/lib |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in gen:
        lines.append(
            f"| {r['seed']} | {r['tempo']:.0f} | {r['instrumentation']} | {r['swing']} | "
            f"{r['rubato']} | {r['ours']['f_measure']:.2f}/{r['baseline']['f_measure']:.2f} | "
            f"{r['ours']['key']:.2f}/{r['baseline']['key']:.2f} | "
            f"{r['ours']['hr3']:.2f}/{r['baseline']['hr3']:.2f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "structure_eval.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "structure_eval.json").write_text(
        json.dumps(
            {
                "date": date,
                "machine": machine(),
                "args": vars(args),
                "summary": summary,
                "rows": rows,
            },
            indent=1,
        )
    )
    print("\n".join(lines[:24]))


if __name__ == "__main__":
    main()
