"""Evaluates the Segue embedding model beside its peers, on held-out tracks, in one run.

    python bench/eval_embedding.py            # `make eval`; needs `make data` first

Protocols (training.catalog.split; the training set is the same for both):
- source (leave-source-out): every track of the soundtracks in training.sources.HELD_OUT_SOURCES,
  which no training run and no teacher ever sees: music from sources the model never heard;
- album: tracks held out by album within the training sources (the older protocol; it also
  measures memory of the training soundtracks).
Tasks (cosine similarity everywhere):
- triplets: same track (two non-overlapping 10 s clips of one song vs a clip of another),
  same source (two songs of one soundtrack/pack vs a song of another), same mood and same style
  (immich labels); accuracy = share of triplets where the anchor is closer to the positive.
- next segment: cuts inside songs every 20 s; query = the 10 s before a cut, gallery = the 10 s
  after every cut; recall@1, recall@10, MRR. Segue answers with its transition vectors (exit of
  the query's last window vs entry of the gallery clip's first window); peers with their clip
  embeddings; the edge frame compares the last 23 ms log-mel frame before the cut with the
  first one after it.
Methods: Segue (models/segue_stream.onnx, and any --candidate NAME=DIR, through ONNX Runtime),
bliss-audio (23 features, z-scored), MECOMP's ONNX model (when ../shared is present), log-mel
mean+std (z-scored), musicnn MTT and MSD (penultimate layer and tag probabilities, from its own
environment via training.teacher_cache; `make teacher-env`), the edge frame, random. A method
that cannot run is named in the report with the reason.
Uncertainty: 95% intervals from a cluster bootstrap over held-out tracks (items of one track
are not independent), for every metric and for Segue minus each peer (paired resamples).
Results: bench/results/embedding_eval.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import soundfile as sf
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segue.machine import describe_machine  # noqa: E402
from training.catalog import Protocol, Track, load_audio, load_catalog, split  # noqa: E402
from training.teacher_cache import DEFAULT_CACHE as TEACHER_CACHE  # noqa: E402
from training.teacher_cache import teacher_available, teacher_outputs  # noqa: E402

SR = 22050
CLIP_S = 10
CUT_SPACING_S = 20
MAX_CLIPS_PER_TRACK = 6
N_TRIPLETS = 1000
N_BOOTSTRAP = 2000
MECOMP = ROOT.parent / "shared" / "peers" / "mecomp_audio_embedding_model.onnx"

Vecs = NDArray[np.float32]


@dataclass
class Clip:
    track: Track
    start_s: int
    audio: NDArray[np.float32]


# ---------------------------------------------------------------- methods
# Each method maps a list of 10 s clips to (clip vectors, query vectors, gallery vectors).


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def segue(model_dir: Path) -> Callable[[list[Clip]], tuple[Vecs, Vecs, Vecs]]:
    sess = _session(model_dir / "segue_stream.onnx")
    state_dim = int(sess.get_modelmeta().custom_metadata_map["segue.state_dim"])

    def run(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
        feel, query, gallery = [], [], []
        for i in range(0, len(clips), 32):
            pcm = np.stack([c.audio for c in clips[i : i + 32]])
            state = np.zeros((len(pcm), state_dim), np.float32)
            _, entry, exit_, f, _, _ = sess.run(None, {"pcm": pcm, "state": state})
            feel.append(f)
            query.append(exit_[:, -1])
            gallery.append(entry[:, 0])
        return np.concatenate(feel), np.concatenate(query), np.concatenate(gallery)

    return run


def mecomp(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
    sess = _session(MECOMP)
    out = [
        sess.run(None, {"audio": np.stack([c.audio for c in clips[i : i + 16]])})[0]
        for i in range(0, len(clips), 16)
    ]
    v = np.concatenate(out)
    return v, v, v


def _zscore(x: NDArray[np.float64]) -> Vecs:
    z: Vecs = ((x - x.mean(0)) / (x.std(0) + 1e-9)).astype(np.float32)
    return z


def logmel_stats(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
    import librosa

    feats = []
    for c in clips:
        mel = librosa.feature.melspectrogram(
            y=c.audio, sr=SR, n_fft=2048, hop_length=512, n_mels=64
        )
        logmel = np.log(mel + 1e-8)
        feats.append(np.concatenate([logmel.mean(1), logmel.std(1)]))
    v = _zscore(np.array(feats))
    return v, v, v


def bliss(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
    from bliss_audio import Song

    feats = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(clips):
            path = Path(tmp) / f"{i}.wav"
            sf.write(path, c.audio, SR, subtype="FLOAT")
            feats.append(np.asarray(Song(str(path)).analysis, dtype=np.float64))
    v = _zscore(np.array(feats))
    return v, v, v


def musicnn(model: str, layer: str) -> Callable[[list[Clip]], tuple[Vecs, Vecs, Vecs]]:
    """musicnn's layer (penultimate or taggram), mean over the clip's 3 s patches.

    Computed in the teacher environment (training/teacher.py) and cached on disk.
    """

    def run(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
        out = teacher_outputs(np.stack([c.audio for c in clips]), cache_dir=TEACHER_CACHE)
        v = out[f"{model}/{layer}"]
        return v, v, v

    return run


def edge_frame(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
    """No model: a 23 ms log-mel frame at each clip's end (query) and start (gallery).

    Only for next segment: the last frame before a cut against the first frame after it.
    The clip vectors (for triplets) are unused and left as zeros.
    """
    import librosa

    def frame(x: NDArray[np.float32]) -> NDArray[np.float64]:
        mel = librosa.feature.melspectrogram(
            y=x, sr=SR, n_fft=512, hop_length=512, n_mels=64, center=False
        )
        out: NDArray[np.float64] = np.log(mel[:, 0] + 1e-8)
        return out

    n = 512
    q = np.array([frame(c.audio[-n:]) for c in clips])
    g = np.array([frame(c.audio[:n]) for c in clips])
    both = _zscore(np.concatenate([q, g]))
    return np.zeros((len(clips), 1), np.float32), both[: len(clips)], both[len(clips) :]


def random_vectors(clips: list[Clip]) -> tuple[Vecs, Vecs, Vecs]:
    v = np.random.default_rng(0).standard_normal((len(clips), 32)).astype(np.float32)
    return v, v, v


# ---------------------------------------------------------------- tasks


def _unit(v: Vecs) -> Vecs:
    u: Vecs = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)
    return u


def triplets(clips: list[Clip], rng: np.random.Generator) -> dict[str, NDArray[np.int64]]:
    """Index triplets (anchor, positive, negative) into clips for each triplet task."""
    by_track: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_track.setdefault(c.track.id, []).append(i)
    tracks = {c.track.id: c.track for c in clips}
    out: dict[str, NDArray[np.int64]] = {}

    multi = [t for t, idx in by_track.items() if len(idx) >= 2]
    rows = []
    for _ in range(N_TRIPLETS):
        a_t = multi[rng.integers(len(multi))]
        a, p = rng.choice(by_track[a_t], 2, replace=False)
        n_t = a_t
        while n_t == a_t:
            n_t = list(by_track)[rng.integers(len(by_track))]
        rows.append((a, p, rng.choice(by_track[n_t])))
    out["same_track"] = np.array(rows)

    def label_triplets(key: str, allowed: Callable[[Track], bool]) -> NDArray[np.int64]:
        labelled = [t for t in tracks.values() if allowed(t)]
        groups: dict[str, list[str]] = {}
        for t in labelled:
            groups.setdefault(str(getattr(t, key)), []).append(t.id)
        anchors = [t for t in labelled if len(groups[str(getattr(t, key))]) >= 2]
        if not anchors or len(groups) < 2:
            return np.zeros((0, 3), dtype=np.int64)
        rows = []
        for _ in range(N_TRIPLETS):
            a_t = anchors[rng.integers(len(anchors))]
            label = str(getattr(a_t, key))
            p_t = a_t.id
            while p_t == a_t.id:
                p_t = groups[label][rng.integers(len(groups[label]))]
            others = [t.id for t in labelled if str(getattr(t, key)) != label]
            n_t = others[rng.integers(len(others))]
            rows.append(
                (rng.choice(by_track[a_t.id]), rng.choice(by_track[p_t]), rng.choice(by_track[n_t]))
            )
        return np.array(rows)

    out["same_source"] = label_triplets("source", lambda t: t.source != "librosa")
    out["same_mood"] = label_triplets("mood", lambda t: t.mood is not None)
    out["same_style"] = label_triplets("style", lambda t: t.style is not None)
    return out


def triplet_correct(v: Vecs, rows: NDArray[np.int64]) -> NDArray[np.float64]:
    """1.0 per triplet where the anchor is closer to the positive than to the negative."""
    u = _unit(v)
    pos = (u[rows[:, 0]] * u[rows[:, 1]]).sum(1)
    neg = (u[rows[:, 0]] * u[rows[:, 2]]).sum(1)
    correct: NDArray[np.float64] = (pos > neg).astype(np.float64)
    return correct


def retrieval_ranks(query: Vecs, gallery: Vecs) -> NDArray[np.int64]:
    """0-based rank of the true continuation (gallery[i] for query[i]) among all gallery items."""
    sim = _unit(query) @ _unit(gallery).T
    rank: NDArray[np.int64] = (sim > np.diag(sim)[:, None]).sum(1)
    return rank


def retrieval_scores(rank: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """Per-query hit@1, hit@10 and reciprocal rank (their means are recall@1/@10 and MRR)."""
    return {
        "recall@1": (rank < 1).astype(np.float64),
        "recall@10": (rank < 10).astype(np.float64),
        "mrr": (1.0 / (rank + 1.0)).astype(np.float64),
    }


def bootstrap_draws(groups: NDArray[np.int64], seed: int) -> NDArray[np.float64]:
    """[N_BOOTSTRAP, n_groups] counts of each group in a resample of groups with replacement.

    Items (triplets, queries) that share a held-out track are not independent, so confidence
    intervals resample whole tracks (a cluster bootstrap), not items.
    """
    n = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    draws: NDArray[np.float64] = rng.multinomial(n, np.full(n, 1.0 / n), N_BOOTSTRAP).astype(
        np.float64
    )
    return draws


def resampled_means(
    scores: NDArray[np.float64], groups: NDArray[np.int64], draws: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Mean of per-item scores under each track resample in draws."""
    n = draws.shape[1]
    sums = np.bincount(groups, weights=scores, minlength=n)
    counts = np.bincount(groups, minlength=n).astype(np.float64)
    means: NDArray[np.float64] = (draws @ sums) / np.maximum(draws @ counts, 1.0)
    return means


def interval(samples: NDArray[np.float64]) -> list[float]:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


# ---------------------------------------------------------------- main


def _clip(track: Track, audio: NDArray[np.float16], start_s: int) -> Clip:
    a = np.asarray(audio[start_s * SR : (start_s + CLIP_S) * SR], dtype=np.float32)
    return Clip(track, start_s, a)


def build_sets(tracks: list[Track], cache: Path) -> tuple[list[Clip], list[Clip], list[Clip]]:
    triplet_clips, before, after = [], [], []
    for t in tracks:
        audio = load_audio(t, cache)
        n_clips = min(MAX_CLIPS_PER_TRACK, int(t.seconds) // CLIP_S)
        triplet_clips += [_clip(t, audio, i * CLIP_S) for i in range(n_clips)]
        cut = CLIP_S
        while cut + CLIP_S <= t.seconds:
            before.append(_clip(t, audio, cut - CLIP_S))
            after.append(_clip(t, audio, cut))
            cut += CUT_SPACING_S
    return triplet_clips, before, after


Method = Callable[[list[Clip]], tuple[Vecs, Vecs, Vecs]]
# Methods that answer next segment only (their clip vectors mean nothing).
NEXT_SEGMENT_ONLY = frozenset({"edge_frame"})
PROTOCOLS: tuple[Protocol, ...] = ("source", "album")


def all_methods(models: dict[str, Path], skip: list[str]) -> tuple[dict[str, Method], list[str]]:
    """Every method of this run, by name, and notes on those left out."""
    found: dict[str, Method] = {name: segue(path) for name, path in models.items()}
    found["mecomp"] = mecomp
    found["bliss"] = bliss
    found["logmel_mean_std"] = logmel_stats
    for model in ("MTT_musicnn", "MSD_musicnn"):
        for layer in ("penultimate", "taggram"):
            found[f"musicnn_{model[:3]}_{layer}"] = musicnn(model, layer)
    found["edge_frame"] = edge_frame
    found["random"] = random_vectors
    notes = []
    if not MECOMP.exists():
        notes.append(f"mecomp: left out, its model is not at {MECOMP} (../shared is missing)")
        del found["mecomp"]
    if not teacher_available():
        notes.append("musicnn: left out, its environment is missing (`make teacher-env`)")
        found = {k: v for k, v in found.items() if not k.startswith("musicnn")}
    for name in skip:
        if found.pop(name, None) is not None:
            notes.append(f"{name}: left out by --skip")
    return found, notes


def compact(track_ids: list[str]) -> NDArray[np.int64]:
    """Track ids numbered 0..n-1 over the tracks a task draws from (the bootstrap's unit)."""
    _, inverse = np.unique(np.array(track_ids), return_inverse=True)
    return inverse.astype(np.int64)


def evaluate(
    eval_tracks: list[Track], cache: Path, methods: dict[str, Method], reference: str
) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """(meta, results per method) for one set of held-out tracks."""
    eval_tracks = [t for t in eval_tracks if t.seconds >= 2 * CLIP_S]
    triplet_clips, before, after = build_sets(eval_tracks, cache)
    rows = triplets(triplet_clips, np.random.default_rng(7))
    # Items are grouped by the held-out track they were drawn for (the triplet's anchor, the
    # query's song): the unit of the cluster bootstrap.
    item_groups = {
        k: compact([triplet_clips[i].track.id for i in r[:, 0]]) for k, r in rows.items() if len(r)
    }
    for metric in ("recall@1", "recall@10", "mrr"):
        item_groups[metric] = compact([c.track.id for c in before])
    # The same resamples for every method, so differences between methods are paired.
    draws = {
        k: bootstrap_draws(g, seed=11 + i) for i, (k, g) in enumerate(sorted(item_groups.items()))
    }
    scores: dict[str, dict[str, NDArray[np.float64]]] = {}
    results: dict[str, dict[str, object]] = {}
    for name, fn in methods.items():
        t0 = time.time()
        per_item = score(name, fn, triplet_clips, before, after, rows)
        scores[name] = per_item
        res: dict[str, object] = {k: float(v.mean()) for k, v in per_item.items()}
        res["ci95"] = {
            k: interval(resampled_means(v, item_groups[k], draws[k])) for k, v in per_item.items()
        }
        res["seconds"] = round(time.time() - t0, 1)
        results[name] = res
        print(name, json.dumps(res), flush=True)
    for name, theirs in scores.items():
        ours = scores.get(reference)
        if name == reference or ours is None:
            continue
        results[name][f"{reference}_minus_this_ci95"] = {
            k: interval(
                resampled_means(ours[k], item_groups[k], draws[k])
                - resampled_means(theirs[k], item_groups[k], draws[k])
            )
            for k in ours
            if k in theirs
        }
    meta = {
        "eval_tracks": len(eval_tracks),
        "eval_minutes": round(sum(t.seconds for t in eval_tracks) / 60, 1),
        "triplet_clips": len(triplet_clips),
        "triplets": {k: len(v) for k, v in rows.items()},
        "cuts": len(before),
        "labelled_tracks": {
            key: len({c.track.id for c in triplet_clips if getattr(c.track, key) is not None})
            for key in ("mood", "style")
        },
        "sources": sorted({t.source for t in eval_tracks}),
    }
    return meta, results


def score(
    name: str,
    fn: Method,
    triplet_clips: list[Clip],
    before: list[Clip],
    after: list[Clip],
    rows: dict[str, NDArray[np.int64]],
) -> dict[str, NDArray[np.float64]]:
    """Per-item scores of one method on every task it answers."""
    per_item: dict[str, NDArray[np.float64]] = {}
    if name not in NEXT_SEGMENT_ONLY:
        clip_vecs, _, _ = fn(triplet_clips)
        per_item = {k: triplet_correct(clip_vecs, r) for k, r in rows.items() if len(r)}
    # Before and after clips go through together so z-scoring treats both sides alike.
    _, q_all, g_all = fn(before + after)
    q, g = q_all[: len(before)], g_all[len(before) :]
    per_item.update(retrieval_scores(retrieval_ranks(q, g)))
    return per_item


def _shown(path: Path) -> str:
    """The path as the report shows it: relative to the checkout when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _model_version(path: Path) -> str:
    sess = ort.InferenceSession(str(path / "segue_stream.onnx"), providers=["CPUExecutionProvider"])
    return str(sess.get_modelmeta().custom_metadata_map.get("segue.version", "?"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another model folder (e.g. a new training run), measured as segue_NAME; repeatable",
    )
    p.add_argument("--protocols", nargs="+", default=["source", "album"], choices=PROTOCOLS)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embedding_eval")
    p.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    a = p.parse_args()

    models = {"segue": a.models}
    for spec in a.candidate:
        name, _, folder = spec.partition("=")
        models[f"segue_{name}"] = Path(folder)
    methods, notes = all_methods(models, a.skip)
    catalog = load_catalog(a.data / "catalog.json")
    report: dict[str, object] = {
        "meta": {
            "date": datetime.date.today().isoformat(),
            "machine": describe_machine(),
            "models": {
                k: {"path": _shown(v), "version": _model_version(v)} for k, v in models.items()
            },
            "left_out": notes,
            "trained_on": sorted({t.source for t in split(catalog)[0]}),
        },
        "protocols": {},
    }
    for protocol in a.protocols:
        print(f"== protocol {protocol}", flush=True)
        meta, results = evaluate(split(catalog, protocol)[1], a.data / "cache", methods, "segue")
        report["protocols"][protocol] = {"meta": meta, "results": results}  # type: ignore[index]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    a.out.with_suffix(".md").write_text(render(report))
    print(f"wrote {a.out.with_suffix('.md')}")

COLUMNS = ["same_track", "same_source", "same_mood", "same_style", "recall@1", "recall@10", "mrr"]


def _table(
    results: dict[str, dict[str, object]], cell: Callable[[dict[str, object], str], str]
) -> list[str]:
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, res in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(res, c) for c in COLUMNS) + " |")
    return lines


def _value(res: dict[str, object], c: str) -> str:
    v = res.get(c)
    return "n/a" if not isinstance(v, float) else f"{v:.3f}"


def _ci(key: str) -> Callable[[dict[str, object], str], str]:
    def cell(res: dict[str, object], c: str) -> str:
        table = res.get(key)
        if not isinstance(table, dict) or c not in table:
            return "n/a"
        lo, hi = table[c]
        return f"[{lo:.3f}, {hi:.3f}]"

    return cell


PROTOCOL_TITLES = {
    "source": "Leave-source-out: whole soundtracks never trained on (training.sources."
    "HELD_OUT_SOURCES)",
    "album": "Within training sources: tracks held out by album (the old protocol; it also "
    "measures memory of the training soundtracks)",
}


def render_protocol(protocol: str, meta: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """One protocol's section: scores, their intervals, and Segue minus each peer."""
    return [
        f"## {PROTOCOL_TITLES[protocol]}",
        "",
        f"Held-out tracks: {meta['eval_tracks']} ({meta['eval_minutes']} min; sources "
        f"{', '.join(meta['sources'])}); triplet clips: {meta['triplet_clips']}; triplets per "
        f"task: {meta['triplets']}; next-segment cuts (= gallery size): {meta['cuts']}; "
        f"held-out tracks with mood/style labels: {meta['labelled_tracks']} (mood and style "
        "triplets come from these few tracks only, so they are noisy: see the intervals).",
        "",
        *_table(results, _value),
        "",
        f"95% intervals ({N_BOOTSTRAP} cluster-bootstrap resamples of the held-out tracks: "
        "triplets grouped by anchor track, queries by their track):",
        "",
        *_table(results, _ci("ci95")),
        "",
        "Segue (models/) minus each peer, 95% interval of the paired difference (same "
        "resamples; above 0 = Segue better with this confidence):",
        "",
        *_table({k: v for k, v in results.items() if k != "segue"}, _ci("segue_minus_this_ci95")),
        "",
    ]


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    models = "; ".join(
        f"{k} = {v['path']} (version {v['version']})" for k, v in meta["models"].items()
    )
    lines = [
        "# Embedding evaluation",
        "",
        f"Date: {meta['date']}. Machine: {meta['machine']}.",
        f"Models: {models}. Training sources of this catalogue's split: "
        f"{', '.join(meta['trained_on'])}.",
        *(f"- {note}" for note in meta["left_out"]),
        "",
        "Triplet columns: accuracy (anchor closer to positive than negative, cosine). "
        "Next segment: query = 10 s before a cut, gallery = 10 s after every cut of the "
        "protocol's tracks; edge_frame compares the last 23 ms log-mel frame before the cut with "
        "the first after it (no model; next segment only). musicnn: penultimate layer or tag "
        "probabilities, mean over 3 s patches.",
        "",
    ]
    for protocol, body in report["protocols"].items():
        lines += render_protocol(protocol, body["meta"], body["results"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
