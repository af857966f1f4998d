"""Trains SegueNet and exports the two ONNX graphs. Read top to bottom.

    python -m training.train                             # the shipped model (`make train`)
    python -m training.train --steps 50 --out /tmp/m     # a quick look

The shipped model is this script's defaults (seed 1234, 1000 steps of 32 tracks, musicnn's MTT
model as the teacher): 21 min wall on the shared 2-core CPU beside another training run;
`--teacher ""` trains without the teacher.

Data: data/catalog.json + data/cache/*.npy from scripts/fetch_data.py and, for the teacher,
data/teacher/ from training/teacher_targets.py (`make teacher-cache`); only the training side
of training.catalog.split() is ever read here (no held-out track, no held-out source).

Each step samples `batch_tracks` training tracks and two random crops of `crop_windows`
one-second windows from each, augments every crop independently (speed on the waveform; EQ,
noise and gain on the log-mel frames), runs the model on the crops from a zero state and
optimises these objectives:

1. next segment (InfoNCE): the exit vector at window i must pick out the entry vector at
   window i+1 among the entries of every window in the batch (other songs, and the same song
   at other times); the other crop's copies of the answer (overlapping in time) are ignored;
2. same song: the feel vectors of different 10 s halves and crops of one track are positives
   against other tracks' (supervised contrastive), likewise the per-window context embedding;
3. labels: feel vectors of tracks sharing a source (soundtrack/pack), mood or style are
   positives (weaker weights);
4. the teacher (with --teacher MTT_musicnn or MSD_musicnn, targets from `make teacher-cache`):
   the batch's feel similarities should rank pairs like musicnn's penultimate layer does on the
   same seconds of audio, and a linear probe on the feel vector (not exported) predicts
   musicnn's tag probabilities. musicnn never runs here: its outputs come from disk.
All with cosine similarity over L2-normalised vectors, as they are used at serving time.
A seeded run is deterministic (same seed -> same weights).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from training.augment import MAX_SPEED_CHANGE, augment_frames, read_crop
from training.catalog import Track, load_audio, load_catalog, split
from training.export import PRECISION, export_all
from training.frontend import FRAMES_PER_WINDOW, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from training.model import FEEL_DIM, SegueNet, zero_state
from training.teacher_targets import TeacherTargets
from training.weight_storage import PRECISIONS


@dataclass
class Config:
    data: Path = Path("data")
    out: Path = Path("models")
    checkpoint: Path = Path("data/checkpoints/segue.pt")
    seed: int = 1234
    steps: int = 1000
    batch_tracks: int = 32
    # Tracks drawn from the labelled (mood/style) immich pack in every batch.
    labelled_per_batch: int = 8
    crop_windows: int = 20
    feel_windows: int = 10
    lr: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    # Entries of the track's other crop whose window starts within this many seconds of the
    # true next window hold (nearly) the same audio, so they are neither positives nor
    # negatives (0: every other entry is a negative).
    next_ignore_seconds: float = 1.0
    w_next: float = 1.0
    w_same_song: float = 1.0
    w_context: float = 0.5
    w_source: float = 0.3
    w_mood: float = 0.6
    w_style: float = 0.6
    # Distillation from musicnn (training/teacher_targets.py; `make teacher-cache`): the
    # teacher's model ("MSD_musicnn" or "MTT_musicnn"; "" = none), where its targets are, and
    # the weights of its two objectives on the feel vector.
    teacher: str = "MTT_musicnn"
    teacher_dir: Path = Path("data/teacher")
    w_distill: float = 3.0
    w_tags: float = 1.0
    teacher_temperature: float = 0.05
    # Width multiplier of the encoder's convs (training.model.conv_channels): 1.5 and 2 did
    # not help on held-out sources (bench/results/embedding_capacity_2026-12-06.md).
    width: float = 1.0
    # How the exported graphs store their weights: "int8" or "float16" (training.export).
    precision: str = PRECISION
    # One thread: as fast as two on the 2-core machine (1.0 s a step), and the shipped run's.
    threads: int = 1
    log_every: int = 25


# ---------------------------------------------------------------- losses


def info_nce(
    query: torch.Tensor,
    gallery: torch.Tensor,
    target: torch.Tensor,
    t: float,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of picking gallery[target[i]] for query[i] by cosine similarity;
    gallery items where ignore[i] is True are neither positives nor negatives."""
    logits = query @ gallery.T / t
    if ignore is not None:
        logits = logits.masked_fill(ignore, float("-inf"))
    return F.cross_entropy(logits, target)


def sup_con(z: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """Supervised contrastive loss; label -1 means unlabelled (never a positive or anchor)."""
    sim = z @ z.T / t
    eye = torch.eye(len(z), dtype=torch.bool)
    sim = sim.masked_fill(eye, float("-inf"))
    pos = (labels[:, None] == labels[None, :]) & ~eye & (labels[:, None] >= 0)
    anchors = pos.any(dim=1)
    if not anchors.any():
        return z.sum() * 0.0
    log_prob = sim.log_softmax(dim=1).masked_fill(~pos, 0.0)
    per_anchor = -log_prob.sum(dim=1) / pos.sum(dim=1).clamp_min(1)
    return per_anchor[anchors].mean()


# ---------------------------------------------------------------- batches


def _label_ids(tracks: list[Track], key: str, skip_librosa: bool = False) -> dict[str, int]:
    values = sorted({getattr(t, key) for t in tracks if getattr(t, key) is not None})
    if skip_librosa:
        values = [v for v in values if v != "librosa"]
    return {v: i for i, v in enumerate(values)}


def sample_batch(
    tracks: list[Track],
    audio: dict[str, np.ndarray],
    cfg: Config,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, list[Track], torch.Tensor]:
    """[2 * batch_tracks, crop_windows * WINDOW_SAMPLES] speed-changed crops (pairs adjacent),
    the tracks, and the start time in the track (seconds) of every window [2 * tracks, W]."""
    labelled = [t for t in tracks if t.mood is not None]
    others = [t for t in tracks if t.mood is None]
    n_lab = min(cfg.labelled_per_batch, len(labelled))
    n_other = min(cfg.batch_tracks - n_lab, len(others))
    chosen = [labelled[i] for i in rng.choice(len(labelled), n_lab, replace=False)] if n_lab else []
    chosen += (
        [others[i] for i in rng.choice(len(others), n_other, replace=False)] if n_other else []
    )
    length = cfg.crop_windows * WINDOW_SAMPLES
    crops, times = [], []
    for t in chosen:
        a = audio[t.id]
        for _ in range(2):
            speed = 1.0 + float(rng.uniform(-MAX_SPEED_CHANGE, MAX_SPEED_CHANGE))
            need = int(np.ceil(length * speed)) + 2
            start = int(rng.integers(0, len(a) - need + 1))
            crops.append(read_crop(a, start, length, speed))
            window_starts = start + np.arange(cfg.crop_windows) * WINDOW_SAMPLES * speed
            times.append(window_starts / SAMPLE_RATE_HZ)
    return torch.stack(crops), chosen, torch.tensor(np.array(times))


def usable(tracks: list[Track], cfg: Config) -> list[Track]:
    min_s = cfg.crop_windows * (1.0 + MAX_SPEED_CHANGE) + 1.0
    return [t for t in tracks if t.seconds >= min_s]


# ---------------------------------------------------------------- one step


def next_segment_ignore(times: torch.Tensor, target: torch.Tensor, seconds: float) -> torch.Tensor:
    """[len(target), crops * W] mask of gallery entries that are neither positive nor negative
    for the query whose answer is entry target[i]: windows of the track's other crop (crops
    come in adjacent pairs per track) starting less than `seconds` from the answer's start.

    times: [crops, W] start time in the track (s) of every window of every crop.
    """
    w = times.shape[1]
    q_crop, g_crop = target // w, torch.arange(times.numel()) // w
    flat = times.reshape(-1)
    sibling = (q_crop[:, None] // 2 == g_crop[None, :] // 2) & (q_crop[:, None] != g_crop[None, :])
    overlapping = (flat[target][:, None] - flat[None, :]).abs() < seconds
    mask: torch.Tensor = sibling & overlapping
    return mask


def losses(
    net: SegueNet,
    frames: torch.Tensor,
    chosen: list[Track],
    times: torch.Tensor,
    ids: dict[str, dict[str, int]],
    cfg: Config,
    teacher: Distiller | None = None,
) -> dict[str, torch.Tensor]:
    n = frames.shape[0]
    w = cfg.crop_windows
    content = net.encode_frames(frames)
    out = net.heads(frames, content, zero_state(n))

    # 1. Next segment: exit at i vs entry at i+1 of the same crop, all entries as the gallery.
    # The other crop of the same track may overlap this one in time: its entries at (almost)
    # the true next window's time are near-duplicates of the answer, so they are ignored rather
    # than pushed away. Other windows of the same song stay in as hard negatives.
    q_idx = torch.arange(1, w - 1)
    query = out.exit[:, q_idx].reshape(-1, out.exit.shape[-1])
    gallery = out.entry.reshape(-1, out.entry.shape[-1])
    target = (torch.arange(n)[:, None] * w + q_idx[None, :] + 1).reshape(-1)
    ignore = next_segment_ignore(times, target, cfg.next_ignore_seconds)
    next_loss = 0.5 * (
        info_nce(query, gallery, target, cfg.temperature, ignore)
        # Reverse direction: entry -> exits; exit m stands for its true next window target[m].
        + info_nce(
            gallery[target], query, torch.arange(len(target)), cfg.temperature, ignore[:, target]
        )
    )

    # 2. Same song: feel of each 10 s half of each crop, computed from a zero state.
    fw = cfg.feel_windows
    starts = range(0, w - fw + 1, fw)
    feels = torch.cat(
        [
            net.heads(
                frames[:, i * FRAMES_PER_WINDOW : (i + fw) * FRAMES_PER_WINDOW],
                content[:, i : i + fw],
                zero_state(n),
            ).feel
            for i in starts
        ]
    )
    track_of = torch.arange(n).div(2, rounding_mode="floor").repeat(len(starts))
    same_song = sup_con(feels, track_of, cfg.temperature)
    ctx = out.embedding[:, fw - 1 :: fw].transpose(0, 1).reshape(-1, out.embedding.shape[-1])
    context = sup_con(ctx, track_of, cfg.temperature)

    # 3. Labels on the feel vector (track-level positives of other tracks only).
    def label_loss(key: str) -> torch.Tensor:
        per_track = [ids[key].get(str(getattr(t, key)), -1) for t in chosen]
        lab = torch.tensor(per_track).repeat_interleave(2).repeat(len(starts))
        # Same-track pairs are covered above; keep one view per track for label positives.
        first = torch.zeros(len(lab), dtype=torch.bool)
        first[:n:2] = True
        return sup_con(feels[first], lab[first], cfg.temperature)

    parts = {
        "next": next_loss,
        "same_song": same_song,
        "context": context,
        "source": label_loss("source"),
        "mood": label_loss("mood"),
        "style": label_loss("style"),
    }
    if teacher is not None:
        # 4. The teacher: musicnn's view of the same 10 s of each track (feel order: half, crop).
        spans = [
            (chosen[c // 2].id, float(times[c, i]), float(times[c, i + fw - 1]) + 1.0)
            for i in starts
            for c in range(n)
        ]
        parts.update(teacher.losses(feels, spans))
    return parts


# ---------------------------------------------------------------- distillation


class Distiller(torch.nn.Module):
    """musicnn as a teacher of the feel vector (training only: nothing here is exported).

    - relation: the batch's feel similarities should rank like the teacher's penultimate
      similarities (KL between row-wise softmaxes; the teacher's vectors are centred first,
      since ReLU outputs are all alike in cosine);
    - tags: a linear probe on the feel vector predicts the teacher's tag probabilities.
    """

    def __init__(self, targets: TeacherTargets, cfg: Config) -> None:
        super().__init__()
        self.targets = targets
        self.centre = torch.tensor(np.concatenate(list(targets.pen.values())).mean(0))
        n_tags = next(iter(targets.tags.values())).shape[1]
        self.tag_probe = torch.nn.Linear(FEEL_DIM, n_tags)
        self.t_student, self.t_teacher = cfg.temperature, cfg.teacher_temperature

    def losses(
        self, feels: torch.Tensor, spans: list[tuple[str, float, float]]
    ) -> dict[str, torch.Tensor]:
        pairs = [self.targets.span(*s) for s in spans]
        pen = F.normalize(torch.tensor(np.stack([p for p, _ in pairs])) - self.centre, dim=-1)
        tags = torch.tensor(np.stack([t for _, t in pairs]))
        eye = torch.eye(len(feels), dtype=torch.bool)
        student = (feels @ feels.T / self.t_student).masked_fill(eye, float("-inf"))
        teacher = (pen @ pen.T / self.t_teacher).masked_fill(eye, float("-inf"))
        relation = F.kl_div(
            student.log_softmax(1).masked_fill(eye, 0.0),
            teacher.log_softmax(1).masked_fill(eye, 0.0),
            log_target=True,
            reduction="batchmean",
        )
        tag_loss = F.binary_cross_entropy_with_logits(self.tag_probe(feels), tags)
        return {"distill": relation, "tags": tag_loss}


# ---------------------------------------------------------------- training loop


def train(cfg: Config) -> SegueNet:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)

    catalog = load_catalog(cfg.data / "catalog.json")
    train_tracks, _ = split(catalog)
    train_tracks = usable(train_tracks, cfg)
    if not train_tracks:
        raise SystemExit("no usable training tracks: run `make data` first")
    audio = {t.id: load_audio(t, cfg.data / "cache") for t in train_tracks}
    ids = {
        "source": _label_ids(train_tracks, "source", skip_librosa=True),
        "mood": _label_ids(train_tracks, "mood"),
        "style": _label_ids(train_tracks, "style"),
    }
    hours = sum(t.seconds for t in train_tracks) / 3600
    print(f"training on {len(train_tracks)} tracks ({hours:.2f} h), {cfg.steps} steps")

    net = SegueNet(cfg.width)
    teacher = (
        Distiller(TeacherTargets(train_tracks, cfg.teacher_dir, cfg.teacher), cfg)
        if cfg.teacher
        else None
    )
    params = [*net.parameters(), *(teacher.parameters() if teacher is not None else [])]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = {
        "next": cfg.w_next,
        "same_song": cfg.w_same_song,
        "context": cfg.w_context,
        "source": cfg.w_source,
        "mood": cfg.w_mood,
        "style": cfg.w_style,
        "distill": cfg.w_distill,
        "tags": cfg.w_tags,
    }
    warmup = max(1, cfg.steps // 20)
    t0 = time.time()
    running: dict[str, float] = {}
    for step in range(cfg.steps):
        # Linear warm-up, then cosine decay to 5% of the peak rate.
        frac = step / max(1, cfg.steps - 1)
        lr = (
            cfg.lr
            * min(1.0, (step + 1) / warmup)
            * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        pcm, chosen, times = sample_batch(train_tracks, audio, cfg, rng)
        with torch.no_grad():
            frames = augment_frames(net.frontend(pcm), rng)
        parts = losses(net, frames, chosen, times, ids, cfg, teacher)
        loss = torch.stack([weights[k] * v for k, v in parts.items()]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        for k, v in parts.items():
            x = float(v.detach())
            running[k] = 0.9 * running.get(k, x) + 0.1 * x
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            desc = " ".join(f"{k}={v:.3f}" for k, v in running.items())
            print(
                f"step {step + 1}/{cfg.steps} lr={lr:.2e} {desc} ({time.time() - t0:.0f}s)",
                flush=True,
            )
    net.eval()
    return net


def main() -> None:
    p = argparse.ArgumentParser(description="Train SegueNet and export the ONNX graphs.")
    defaults = Config()
    for field, value in asdict(defaults).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    cfg = Config(**vars(p.parse_args()))
    if cfg.precision not in PRECISIONS:  # before training, not after it
        p.error(f"--precision must be one of {', '.join(PRECISIONS)}")
    start = time.time()
    net = train(cfg)
    cfg.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": net.state_dict(), "config": {k: str(v) for k, v in asdict(cfg).items()}},
        cfg.checkpoint,
    )
    version = export_all(net, cfg.out, precision=cfg.precision)
    summary = {
        "version": version,
        "train_seconds": round(time.time() - start, 1),
        "steps": cfg.steps,
        "seed": cfg.seed,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
