"""Fine-tunes Segue's feel vector on Segue Studio's human triplets. Read top to bottom.

    python -m training.finetune_human --human answers.json --music ~/Music
    make train HUMAN_TRIPLETS=answers.json HUMAN_MUSIC=~/Music     # the same, via make

`--human`: the Studio's JSON export (preferred: the exact clips heard are used) or MECOMP's
CSV (a clip from the middle of each song); `--music`: the folder the songs were indexed from
(song id = path relative to it; default: the bundled tracks the demo plays). See
training/human_triplets.py for both formats and the split.

1. The starting point is the shipped model: the weights of models/segue_stream.onnx, read back
   into torch and checked against ONNX Runtime (no torch checkpoint is needed).
2. The triplets are split into fine-tune and held-out ones (fixed seed, by triplet or by
   annotator; training.human_triplets.split). Held-out triplets are never trained on.
3. Only the feel vector's own layers learn: the attention pooling (pool_score, pool_value) and
   feel_head. The window encoder, GRU and the embedding/entry/exit heads stay frozen, so every
   other output of segue_stream.onnx stays as it was (to within ~1e-4: the export rounds the
   BatchNorm that the shipped graph folded into its convs to float16 once more), and each
   clip's per-window content is computed once.
4. Loss per triplet: a margin loss on cosine distance, the two clips the annotator kept must be
   closer to each other than either is to the odd one out, by `margin`; plus `w_keep` times
   the mean cosine distance of every fine-tune clip's new feel vector to its original one,
   which holds the model near the shipped embedding so it does not forget what it knew.
5. Agreement (segue.studio.agreement) on the held-out triplets is printed before training and
   after every epoch; the fine-tuned model is written to `--out` (both ONNX graphs, a torch
   checkpoint and finetune_human.json with the split and the agreement before and after).
   models/ is only overwritten with `--replace-models`.

A run is deterministic (same data, seed and settings -> same weights).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812

from segue.music import bundled_tracks_dir
from segue.studio.agreement import agreement_flags
from training.export import export_all, verify_against_torch
from training.frontend import FRAMES_PER_WINDOW, N_MELS, WINDOW_SAMPLES
from training.human_triplets import (
    HELD_OUT_FRACTION,
    SPLIT_BY,
    SPLIT_SEED,
    FloatArray,
    HumanClip,
    HumanTriplet,
    IntArray,
    MusicFolder,
    index_triplets,
    load_clip_audio,
    read_human_triplets,
    split,
)
from training.model import FEEL_DIM, SegueNet, zero_state
from training.onnx_weights import net_from_onnx
from training.weight_storage import precision_of

# The layers that only feed the feel vector: the ones fine-tuned.
FEEL_LAYERS = ("pool_score", "pool_value", "feel_head")
SUMMARY = "finetune_human.json"
CHECKPOINT = "finetune_human.pt"


@dataclass
class Config:
    human: Path = Path("human_triplets.json")
    # Folder the song ids are relative to; "" = the bundled tracks (the demo's default).
    music: str = ""
    models: Path = Path("models")
    out: Path = Path("out/human_finetune")
    replace_models: bool = False
    keep_flagged: bool = False
    split_by: str = "triplet"
    held_out: float = HELD_OUT_FRACTION
    split_seed: int = SPLIT_SEED
    seed: int = 1234
    epochs: int = 8
    batch_triplets: int = 32
    lr: float = 1e-3
    margin: float = 0.1
    w_keep: float = 1.0
    threads: int = 2


# ---------------------------------------------------------------- the starting model


def shipped_net(models_dir: Path) -> SegueNet:
    """SegueNet with the weights of `models_dir`/segue_stream.onnx, checked against ORT."""
    net = net_from_onnx(models_dir / "segue_stream.onnx")
    worst = verify_against_torch(net, models_dir / "segue_stream.onnx",
                                 models_dir / "audio_embedding_model.onnx")
    if worst > 1e-3:
        raise RuntimeError(f"the weights read back from {models_dir} differ from ONNX Runtime "
                           f"by {worst:.1e}")
    return net


def model_version(models_dir: Path) -> str:
    props = onnx.load(str(models_dir / "segue_stream.onnx")).metadata_props
    return next((p.value for p in props if p.key == "segue.version"), "?")


# ---------------------------------------------------------------- clips and feel vectors


def frozen_content(net: SegueNet, audio: list[FloatArray], batch: int = 64
                   ) -> list[torch.Tensor]:
    """Per clip, the frozen encoder's content vectors [windows, HIDDEN] of its whole windows
    (a trailing partial window is dropped, as the MECOMP graph does)."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(audio)
    by_windows: dict[int, list[int]] = {}
    for i, pcm in enumerate(audio):
        by_windows.setdefault(pcm.size // WINDOW_SAMPLES, []).append(i)
    with torch.no_grad():
        for windows, members in by_windows.items():
            for s in range(0, len(members), batch):
                chunk = members[s : s + batch]
                whole = torch.from_numpy(np.stack([audio[i][: windows * WINDOW_SAMPLES]
                                                   for i in chunk]))
                _, content = net.encode_windows(whole)
                for j, i in enumerate(chunk):
                    out[i] = content[j]
    return out


def feels(net: SegueNet, content: list[torch.Tensor]) -> torch.Tensor:
    """Feel vectors [len(content), FEEL_DIM] of clips from their frozen content, as
    net.heads computes them from a zero state (the edge frames only feed entry and exit, so
    zeros stand in for them)."""
    rows: list[torch.Tensor] = [torch.empty(0)] * len(content)
    by_windows: dict[int, list[int]] = {}
    for i, c in enumerate(content):
        by_windows.setdefault(c.shape[0], []).append(i)
    for windows, members in by_windows.items():
        batch = torch.stack([content[i] for i in members])
        frames = batch.new_zeros(len(members), windows * FRAMES_PER_WINDOW, N_MELS)
        feel = net.heads(frames, batch, zero_state(len(members))).feel
        for j, i in enumerate(members):
            rows[i] = feel[j]
    return torch.stack(rows) if rows else torch.zeros(0, FEEL_DIM)


def agreement(net: SegueNet, content: list[torch.Tensor], rows: IntArray, odd: IntArray
              ) -> float:
    """Share of triplets (clip indices `rows`, human odd slots `odd`) the model agrees with."""
    if not len(rows):
        return float("nan")
    with torch.no_grad():
        vectors = feels(net, content).numpy()
    return float(agreement_flags(vectors[rows], [int(o) for o in odd]).mean())


# ---------------------------------------------------------------- loss


# For each odd slot, the two kept slots then the odd one.
_KEPT_THEN_ODD = torch.tensor([[1, 2, 0], [0, 2, 1], [0, 1, 2]])


def triplet_margin_loss(feel: torch.Tensor, odd: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over triplets of the margin loss on cosine distance: feel [B, 3, D] (unit vectors,
    page order), odd [B] the human's odd slots. The kept pair must be closer to each other
    than either is to the odd one out, by `margin`."""
    order = _KEPT_THEN_ODD[odd]
    a, p, o = feel.gather(1, order[..., None].expand(-1, -1, feel.shape[2])).unbind(1)

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - (x * y).sum(-1)

    together = distance(a, p)
    loss = 0.5 * (F.relu(margin + together - distance(a, o))
                  + F.relu(margin + together - distance(p, o)))
    return loss.mean()


# ---------------------------------------------------------------- fine-tuning


@dataclass
class Prepared:
    """A set of triplets ready to train or evaluate on: distinct clips' content, the [n, 3]
    clip indices of each triplet and the human odd slots."""

    content: list[torch.Tensor]
    rows: IntArray
    odd: IntArray


def prepare(net: SegueNet, triplets: list[HumanTriplet],
            audio: dict[HumanClip, FloatArray]) -> Prepared:
    clips, rows, odd = index_triplets(triplets)
    return Prepared(frozen_content(net, [audio[c] for c in clips]), rows, odd)


def finetune(net: SegueNet, tune: Prepared, held: Prepared, cfg: Config
             ) -> list[dict[str, float]]:
    """Trains the feel layers of `net` in place; returns per-epoch figures (epoch 0: before)."""
    rng = np.random.default_rng(cfg.seed)
    for name, p in net.named_parameters():
        p.requires_grad_(name.split(".")[0] in FEEL_LAYERS)
    with torch.no_grad():
        original = feels(net, tune.content)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)
    history = [{"epoch": 0, "fine_tune_agreement": agreement(net, tune.content, tune.rows,
                                                             tune.odd),
                "held_out_agreement": agreement(net, held.content, held.rows, held.odd)}]
    print(f"before: fine-tune agreement {history[0]['fine_tune_agreement']:.3f}, held-out "
          f"{history[0]['held_out_agreement']:.3f}", flush=True)
    t0 = time.time()
    for epoch in range(1, cfg.epochs + 1):
        sums = {"triplet": 0.0, "keep": 0.0}
        order = rng.permutation(len(tune.rows))
        for s in range(0, len(order), cfg.batch_triplets):
            batch = tune.rows[order[s : s + cfg.batch_triplets]]
            used, local = np.unique(batch, return_inverse=True)
            feel = feels(net, [tune.content[i] for i in used])
            odd = torch.from_numpy(tune.odd[order[s : s + cfg.batch_triplets]])
            triplet = triplet_margin_loss(feel[torch.from_numpy(local.reshape(-1, 3))], odd,
                                          cfg.margin)
            keep = (1.0 - (feel * original[torch.from_numpy(used)]).sum(-1)).mean()
            loss = triplet + cfg.w_keep * keep
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            opt.step()
            sums["triplet"] += float(triplet.detach()) * len(batch)
            sums["keep"] += float(keep.detach()) * len(batch)
        row = {"epoch": epoch,
               **{k: v / max(1, len(order)) for k, v in sums.items()},
               "fine_tune_agreement": agreement(net, tune.content, tune.rows, tune.odd),
               "held_out_agreement": agreement(net, held.content, held.rows, held.odd)}
        history.append(row)
        print(f"epoch {epoch}/{cfg.epochs} triplet={row['triplet']:.4f} "
              f"keep={row['keep']:.4f} fine-tune agreement {row['fine_tune_agreement']:.3f}, "
              f"held-out {row['held_out_agreement']:.3f} ({time.time() - t0:.0f}s)", flush=True)
    for p in net.parameters():
        p.requires_grad_(True)
    return history


def run(cfg: Config) -> dict[str, object]:
    """The whole fine-tune (see the module doc); returns the summary it writes."""
    start = time.time()
    if cfg.split_by not in SPLIT_BY:
        raise SystemExit(f"--split-by must be one of {', '.join(SPLIT_BY)}")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)

    triplets = read_human_triplets(cfg.human, keep_flagged=cfg.keep_flagged)
    tune_set, held_set = split(triplets, by=cfg.split_by,
                               held_out=cfg.held_out, seed=cfg.split_seed)
    if not tune_set or not held_set:
        raise SystemExit(f"{cfg.human}: {len(triplets)} usable triplets; fine-tuning needs at "
                         "least two (one to learn from, one held out)")
    music = MusicFolder(Path(cfg.music) if cfg.music else bundled_tracks_dir())
    print(f"{len(triplets)} human triplets from {cfg.human}: {len(tune_set)} to fine-tune on, "
          f"{len(held_set)} held out (split by {cfg.split_by}, seed {cfg.split_seed})")
    audio = load_clip_audio({c for t in triplets for c in t.clips}, music)

    net = shipped_net(cfg.models)
    base_version = model_version(cfg.models)
    tune, held = prepare(net, tune_set, audio), prepare(net, held_set, audio)
    history = finetune(net, tune, held, cfg)

    # The fine-tuned model keeps the shipped one's weight precision; what the files store is
    # what is measured.
    cfg.out.mkdir(parents=True, exist_ok=True)
    precision = precision_of(onnx.load(str(cfg.models / "segue_stream.onnx")).graph)
    version = export_all(net, cfg.out, precision=precision)
    shipped = net_from_onnx(cfg.out / "segue_stream.onnx")
    after = agreement(shipped, held.content, held.rows, held.odd)
    torch.save({"model": net.state_dict(), "config": {k: str(v) for k, v in asdict(cfg).items()}},
               cfg.out / CHECKPOINT)
    if cfg.replace_models:
        export_all(net, cfg.models, version, precision)
    summary: dict[str, object] = {
        "version": version,
        "base_version": base_version,
        "human": str(cfg.human),
        "music": str(music.root),
        "split": {"by": cfg.split_by, "seed": cfg.split_seed, "held_out_fraction": cfg.held_out,
                  "keep_flagged": cfg.keep_flagged, "fine_tune_triplets": len(tune_set),
                  "held_out_triplets": len(held_set)},
        "held_out_agreement": {"before": history[0]["held_out_agreement"], "after": after},
        "history": history,
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "replaced_models": cfg.replace_models,
        "seconds": round(time.time() - start, 1),
    }
    (cfg.out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"held-out agreement {summary['held_out_agreement']}; wrote {cfg.out}"
          + (f" and {cfg.models}" if cfg.replace_models else ""))
    return summary


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = Config()
    for field in fields(Config):
        value = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(value), default=value,
                           required=field.name == "human")
    return Config(**vars(p.parse_args(argv)))


def main() -> None:
    try:
        run(parse_args())
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"finetune_human: {e}") from None


if __name__ == "__main__":
    main()
