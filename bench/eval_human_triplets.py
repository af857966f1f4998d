"""How often each model agrees with the held-out human odd-one-out answers of Segue Studio.

    python bench/eval_human_triplets.py --human answers.json --music ~/Music
    make eval HUMAN_TRIPLETS=answers.json HUMAN_MUSIC=~/Music      # after `make train ...`

Triplets: the held-out side of training.human_triplets.split, with the split settings the
fine-tune used (read from `<finetuned>/finetune_human.json`; the defaults, or the flags given
here, when there is none), so no triplet the fine-tune learned from is scored. Clips are the
ones the annotators heard (Studio JSON) or each song's middle (MECOMP CSV).
Methods, each on the same clips: Segue before (the feel vector of `--models`, the shipped
model) and after (that of `--finetuned`, when the fine-tune has run), bliss-audio (23 features
z-scored over the clips, as bench/eval_embedding.py runs it), MECOMP's ONNX model (when
../shared has it) and random vectors; chance is 1/3.
A model agrees when its odd one out (the slot outside the closest pair by cosine distance,
segue.studio.agreement) is the one the annotator picked.
Uncertainty: 95% percentile intervals from N_BOOTSTRAP (2000) bootstrap resamples of the
held-out triplets, the same resamples for every method, so each method minus Segue before is a
paired difference. Answers of one annotator are not independent, so these intervals are if anything
too narrow.
Results: bench/results/human_triplets_<date>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from bench.eval_embedding import (  # noqa: E402
    MECOMP,
    N_BOOTSTRAP,
    Clip,
    bliss,
    bootstrap_draws,
    interval,
    random_vectors,
    resampled_means,
)
from segue.music import bundled_tracks_dir  # noqa: E402
from segue.studio.agreement import agreement_flags  # noqa: E402
from training.catalog import Track  # noqa: E402
from training.human_triplets import (  # noqa: E402
    HELD_OUT_FRACTION,
    SPLIT_BY,
    SPLIT_SEED,
    FloatArray,
    MusicFolder,
    index_triplets,
    load_clip_audio,
    read_human_triplets,
    split,
)

SUMMARY = "finetune_human.json"  # training.finetune_human.SUMMARY (that module needs torch)
FEEL_GRAPH = "audio_embedding_model.onnx"
BASELINE = "segue_before"
Method = Callable[[list[FloatArray]], NDArray[np.float32]]


# ---------------------------------------------------------------- methods
# Each maps the clips (mono float32 at 22050 Hz) to one vector per clip.


def onnx_feel(path: Path) -> Method:
    """An `audio [batch, samples] -> embedding` graph (Segue's feel graph, MECOMP's model),
    one clip per call (clips may differ in length)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(audio: list[FloatArray]) -> NDArray[np.float32]:
        return np.concatenate([sess.run(None, {name: a[None]})[0] for a in audio])

    return run


def _as_clips(audio: list[FloatArray]) -> list[Clip]:
    """The clips as bench/eval_embedding.py's records (its methods only read the audio)."""
    track = Track(id="human", source="studio", album="")
    return [Clip(track, 0, a) for a in audio]


def bliss_vectors(audio: list[FloatArray]) -> NDArray[np.float32]:
    return bliss(_as_clips(audio))[0]


def random_feel(audio: list[FloatArray]) -> NDArray[np.float32]:
    return random_vectors(_as_clips(audio))[0]


def methods(models: Path, finetuned: Path, skip: list[str]) -> tuple[dict[str, Method],
                                                                      list[str]]:
    """The methods to run, and notes on those left out."""
    found: dict[str, Method] = {BASELINE: onnx_feel(models / FEEL_GRAPH)}
    notes = []
    if (finetuned / FEEL_GRAPH).is_file():
        found["segue_after"] = onnx_feel(finetuned / FEEL_GRAPH)
    else:
        notes.append(f"Segue after: no fine-tuned model in {finetuned} (run `make train "
                     "HUMAN_TRIPLETS=...` first).")
    found["bliss"] = bliss_vectors
    if MECOMP.is_file():
        found["mecomp"] = onnx_feel(MECOMP)
    else:
        notes.append(f"MECOMP: left out, its model is not at {MECOMP}.")
    found["random"] = random_feel
    for name in skip:
        if found.pop(name, None) is not None:
            notes.append(f"{name}: left out (--skip).")
    return found, notes


def model_version(path: Path) -> str:
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return str(meta.custom_metadata_map.get("segue.version", "?"))


# ---------------------------------------------------------------- the split


def split_settings(finetuned: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The fine-tune's split settings where it wrote them, else the flags'."""
    summary = finetuned / SUMMARY
    if summary.is_file():
        saved = json.loads(summary.read_text())["split"]
        return {"by": saved["by"], "seed": int(saved["seed"]),
                "held_out_fraction": float(saved["held_out_fraction"]),
                "keep_flagged": bool(saved["keep_flagged"]), "from": str(summary)}
    return {"by": a.split_by, "seed": a.split_seed, "held_out_fraction": a.held_out,
            "keep_flagged": a.keep_flagged, "from": "defaults/flags"}


# ---------------------------------------------------------------- main


def evaluate(a: argparse.Namespace) -> dict[str, Any]:
    """Scores every method on the held-out triplets; returns the results' JSON data."""
    settings = split_settings(a.finetuned, a)
    triplets = read_human_triplets(a.human, keep_flagged=settings["keep_flagged"])
    _, held = split(triplets, by=settings["by"], held_out=settings["held_out_fraction"],
                    seed=settings["seed"])
    if not held:
        raise SystemExit(f"{a.human}: no held-out triplets to score ({len(triplets)} usable)")
    clips, rows, odd = index_triplets(held)
    music = MusicFolder(a.music if a.music else bundled_tracks_dir())
    by_clip = load_clip_audio(clips, music)
    audio = [by_clip[c] for c in clips]
    found, notes = methods(a.models, a.finetuned, a.skip)

    draws = bootstrap_draws(np.arange(len(held), dtype=np.int64), seed=11)
    groups = np.arange(len(held), dtype=np.int64)
    flags: dict[str, NDArray[np.float64]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, method in found.items():
        t0 = time.time()
        vectors = method(audio)
        flags[name] = agreement_flags(vectors[rows], [int(o) for o in odd]).astype(np.float64)
        results[name] = {"agreement": float(flags[name].mean()),
                         "ci95": interval(resampled_means(flags[name], groups, draws)),
                         "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(results[name]), flush=True)
    baseline = resampled_means(flags[BASELINE], groups, draws)
    for name in results:
        if name != BASELINE:
            results[name]["minus_segue_before_ci95"] = interval(
                resampled_means(flags[name], groups, draws) - baseline)
    versions = {BASELINE: model_version(a.models / FEEL_GRAPH)}
    if "segue_after" in found:
        versions["segue_after"] = model_version(a.finetuned / FEEL_GRAPH)
        if versions["segue_after"] == versions[BASELINE]:
            notes.append(f"{a.models} already holds the fine-tuned model (--replace-models): "
                         "segue_before is not the model the fine-tune started from.")
    return {
        "human": str(a.human),
        "music": str(music.root),
        "split": settings,
        "triplets": len(triplets),
        "held_out_triplets": len(held),
        "held_out_clips": len(clips),
        "annotators": len({t.annotator for t in held if t.annotator is not None}),
        "versions": versions,
        "notes": notes,
        "results": results,
    }


def render(run: rep.RunInfo, data: dict[str, Any]) -> str:
    split_info = data["split"]
    notes = [
        "",
        f"Human answers: `{data['human']}`, audio under `{data['music']}`. Held out: "
        f"{data['held_out_triplets']} of {data['triplets']} triplets ({data['held_out_clips']} "
        f"clips, {data['annotators']} annotators named), split by {split_info['by']} with seed "
        f"{split_info['seed']} and held-out fraction {split_info['held_out_fraction']} "
        f"(settings from {split_info['from']}).",
        "Segue versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".",
        *data["notes"],
    ]
    rows = []
    for name, res in data["results"].items():
        diff = res.get("minus_segue_before_ci95")
        rows.append([name, f"{res['agreement']:.3f}",
                     "[{:.3f}, {:.3f}]".format(*res["ci95"]),
                     "-" if diff is None else "[{:+.3f}, {:+.3f}]".format(*diff)])
    return "\n".join([
        *rep.header("Agreement with held-out human triplets", run, notes),
        "Agreement: share of held-out triplets where the method's odd one out (outside its "
        "closest pair by cosine distance) is the annotator's; chance is 0.333. Intervals: 95%, "
        f"{N_BOOTSTRAP} bootstrap resamples of the triplets (paired across methods).",
        "",
        *rep.table(["method", "agreement", "95% interval", "minus segue_before, 95%"], rows,
                   "lrrr"),
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--human", type=Path, required=True,
                   help="the Studio's JSON export or MECOMP's triplet CSV")
    p.add_argument("--music", type=Path, default=None,
                   help="folder the song ids are relative to (default: the bundled tracks)")
    p.add_argument("--models", type=Path, default=REPO / "models")
    p.add_argument("--finetuned", type=Path, default=REPO / "out" / "human_finetune")
    p.add_argument("--out-dir", type=Path, default=rep.RESULTS)
    p.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    p.add_argument("--split-by", choices=SPLIT_BY, default="triplet")
    p.add_argument("--held-out", type=float, default=HELD_OUT_FRACTION)
    p.add_argument("--split-seed", type=int, default=SPLIT_SEED)
    p.add_argument("--keep-flagged", action="store_true")
    a = p.parse_args(argv)
    run = rep.capture_run(argv=None if argv is None else ["bench/eval_human_triplets.py",
                                                          *argv])
    try:
        data = evaluate(a)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"eval_human_triplets: {e}") from None
    md, _ = rep.write_results(rep.results_stem(a.out_dir, "human_triplets", run.date),
                              render(run, data), {"run": run.as_dict(), **data})
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
