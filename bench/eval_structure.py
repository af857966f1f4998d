"""Structure analysis against librosa baselines on generated songs, splice composites and
real recordings, scored with mir_eval; writes bench/results/structure_eval.{md,json}.

    python bench/eval_structure.py [--songs 24] [--composites 12]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import librosa
import mir_eval
import numpy as np
from immich_memories_music import tracks_dir

from segue.machine import describe_machine
from segue.structure import StructureAccumulator, analyze_audio
from segue.structure.camelot import key_name
from segue.structure.key import krumhansl_key
from segue.structure.onset import LogMel
from segue.structure.splice import load_mono, splice
from segue.synth import generate_song

SR = 22050
ROOT = Path(__file__).resolve().parents[1]
SHARED_MUSIC = ROOT.parent / "shared" / "music" / "librosa"
SHARED_PEER = ROOT.parent / "shared" / "peers" / "mecomp_audio_embedding_model.onnx"
SEGUE_MODEL = ROOT / "models" / "segue_stream.onnx"
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
    return describe_machine()


def _best_cpu_time(run: Any, repeats: int = 5) -> float:
    """Smallest process CPU time of `run()` over repeats (other jobs share the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def overhead(audio: np.ndarray) -> dict[str, float]:
    """Per-window push cost (with the model's mel frames and without) and final analysis cost,
    next to the Segue model's own cost per window measured in the same run."""
    windows = [audio[i : i + SR] for i in range(0, len(audio), SR)]
    front = LogMel(SR)
    mels = [front.frames(np.zeros(0, np.float32), w)[0] for w in windows]

    def push_mel() -> StructureAccumulator:
        state = StructureAccumulator(SR)
        for w, m in zip(windows, mels, strict=True):
            state.push(w, m)
        return state

    def push_batches() -> None:
        state = StructureAccumulator(SR)
        full = np.stack([w for w in windows if len(w) == SR])
        full_mels = np.stack(mels[: len(full)])
        for i in range(0, len(full), 16):
            state.push_batch(full[i : i + 16], full_mels[i : i + 16])

    def push_pcm() -> None:
        state = StructureAccumulator(SR)
        for w in windows:
            state.push(w)

    state = push_mel()
    state.analyze()  # imports and caches warmed
    result = {
        "push_mel_us": _best_cpu_time(push_mel) / len(windows) * 1e6,
        "push_mel_batch16_us": _best_cpu_time(push_batches) / len(windows) * 1e6,
        "push_pcm_us": _best_cpu_time(push_pcm) / len(windows) * 1e6,
        "analyze_ms": _best_cpu_time(state.analyze) * 1e3,
        "state_bytes_per_s": len(state.to_bytes()) / (len(audio) / SR),
        "song_s": len(audio) / SR,
    }
    batch = np.stack([np.pad(w, (0, SR - len(w))) for w in windows]).astype(np.float32)
    result["segue_model_us_per_window"] = _model_us_per_window(SEGUE_MODEL, batch)
    if SHARED_PEER.exists():
        result["peer_model_us_per_window"] = _model_us_per_window(SHARED_PEER, batch)
    return result


def _model_us_per_window(path: Path, batch: np.ndarray) -> float:
    """CPU time per 1 s window of an ONNX model on one thread: the Segue model in batches of
    16 windows (as the embedder runs it), the peer one window per call (its interface)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if "state" in {i.name for i in session.get_inputs()}:
        rows = batch[: 16 * (len(batch) // 16)].reshape(-1, 16, SR)
        width = int(session.get_modelmeta().custom_metadata_map["segue.state_dim"])
        state_in = np.zeros((16, width), np.float32)

        def run() -> None:
            for chunk in rows:
                session.run(None, {"pcm": chunk, "state": state_in})

        return _best_cpu_time(run, 3) / (len(rows) * 16) * 1e6

    def run_peer() -> None:
        for row in batch:
            session.run(None, {"audio": row[None, :]})

    return _best_cpu_time(run_peer, 3) / len(batch) * 1e6


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
        "## Cost (180 s generated song, best of 5 runs in process CPU time, one thread)",
        "",
        f"- push with the model's mel frames: {cost['push_mel_us']:.0f} µs per 1 s window",
        f"- push_batch of 16 windows with mel frames: {cost['push_mel_batch16_us']:.0f} µs "
        "per window",
        f"- push computing the same log-mel itself: {cost['push_pcm_us']:.0f} µs per window",
        f"- final analysis: {cost['analyze_ms']:.1f} ms per song "
        f"({cost['analyze_ms'] / cost['song_s'] * 1e3:.0f} µs per second of audio)",
        f"- resumable state: {cost['state_bytes_per_s']:.0f} bytes per second of audio",
    ]
    amortised = cost["analyze_ms"] * 1e3 / cost["song_s"]
    model_us = cost["segue_model_us_per_window"]
    per_window_total = cost["push_mel_us"] + amortised
    batched_total = cost["push_mel_batch16_us"] + amortised
    lines.append(
        f"- Segue model (segue_stream.onnx, batches of 16 windows, 1 thread): {model_us:.0f} µs "
        f"per window; structure adds {per_window_total:.0f} µs per window with push "
        f"({per_window_total / model_us:.0%} of the model) and {batched_total:.0f} µs with "
        f"push_batch ({batched_total / model_us:.0%}); target <= 10%"
    )
    if "peer_model_us_per_window" in cost:
        lines.append(
            "- peer model (MECOMP ONNX, batch 1, 1 thread): "
            f"{cost['peer_model_us_per_window']:.0f} µs per window; structure adds "
            f"{per_window_total / cost['peer_model_us_per_window']:.0%} to it"
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
