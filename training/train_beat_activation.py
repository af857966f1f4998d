"""Trains the beat activation network (segue/structure/beat_activation.py).

Data: the rendered-MIDI set's tuning split (bench/midi_set.py, `make data`; both soundfonts)
and generated songs 2000-2023 and 3000-3023, the material the structure engine's other
constants were fit on. The held-out split is never read. Each example is a song's network
input (log onset envelopes at the onset frame rate) and its labelled beats and downbeats.

Training: random crops, each stretched in time by up to ±25% (tempo variety; the beat labels
move with it) and scaled in level, binary cross-entropy against beat and downbeat targets a
frame wide either side, one-cycle learning rate. `--cross` trains twice, on freedm and the
generated songs and on openmsx, simutrans and the generated songs, scoring each on the other
sources (beat-probability peaks against the labels), so that a change can be judged on music
its model did not see before it is trained on all of it.

    python -m training.train_beat_activation [--cross] [--steps 4000] [--channels 20]
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mir_eval
import numpy as np
import numpy.typing as npt
import scipy.signal
import torch
from torch import nn
from torch.nn import functional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ and devkit/ are not installed

from bench import midi_set  # noqa: E402
from devkit.synth import SynthSong, evaluation_song  # noqa: E402
from segue.structure.accumulator import audio_features  # noqa: E402
from segue.structure.analysis import ONSET_FPS, band_onsets  # noqa: E402
from segue.structure.beat_activation import (  # noqa: E402
    DEFAULT_WEIGHTS,
    INPUTS,
    STEP_FRAMES,
    TASKS,
    BeatActivation,
    Conv,
    activation_inputs,
)

SR = 22050
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
CACHE = ROOT / "data" / "cache" / "beat_activation_examples.pkl"

# Network and training settings.
CHANNELS = 20
DILATIONS = (1, 2, 4, 8, 16, 32)  # in steps of STEP_FRAMES frames
KERNEL = 5
DROPOUT = 0.1
STEPS = 4000
BATCH = 16
CROP_FRAMES = 900  # 20 s
MAX_LR = 3e-3
STRETCH = (0.8, 1.25)
GAIN_DB = 6.0
# Positives are rare (one frame in twenty): weigh them up; the downbeat is an auxiliary task.
POS_WEIGHT = (4.0, 8.0)
DOWNBEAT_WEIGHT = 0.3
# Targets: 1 on the labelled frame, this on its neighbours.
NEIGHBOUR_TARGET = 0.5
# Scoring: a peak counts as a beat above this probability.
PEAK_THRESHOLD = 0.3
SEED = 0
# Example groups: the tuning split's two source groups, then the generated songs.
GROUPS = ("freedm", "om+st", "gen")


@dataclass(frozen=True)
class Example:
    group: str  # "freedm", "om+st" (openmsx and simutrans) or "gen"
    name: str
    inputs: F32  # [frames, INPUTS]
    beats_s: F64
    downbeats_s: F64


# -- data -------------------------------------------------------------------------------------


def song_inputs(audio: F32) -> F32:
    """The network input of a song's whole seconds, accumulated as the service streams them."""
    full, _, bands = band_onsets(audio_features(audio[: len(audio) // SR * SR], SR))
    return activation_inputs(full, bands)


def generated_songs() -> list[Example]:
    """Generated songs 2000-2023 and 3000-3023 (the evaluation's are seeds 1000-1999)."""
    return [_song_example(evaluation_song(s)) for s in [*range(2000, 2024), *range(3000, 3024)]]


def _song_example(song: SynthSong) -> Example:
    beats = np.asarray(song.beat_times_s, float)
    inputs = song_inputs(song.audio.astype(np.float32))
    return Example("gen", f"gen/{song.seed}", inputs, beats, song.downbeat_times_s)


def tuning_renderings(set_dir: Path) -> list[Example]:
    out = []
    for piece in midi_set.load("tuning", set_dir):
        group = "freedm" if piece.name.startswith("freedm/") else "om+st"
        labels = piece.labels
        out.append(
            Example(
                group,
                f"{piece.name}:{piece.font}",
                song_inputs(piece.audio()),
                np.asarray(labels.beats_s, float),
                np.asarray(labels.downbeats_s, float),
            )
        )
    return out


def load_examples(set_dir: Path, cache: Path = CACHE) -> list[Example]:
    """Every training example, computed once and cached (until the set's catalogue changes)."""
    catalogue = hashlib.sha256((set_dir / "catalog.json").read_bytes()).hexdigest()
    if cache.exists():
        with cache.open("rb") as f:
            stored, examples = pickle.load(f)
        if stored == catalogue:
            return examples  # type: ignore[no-any-return]
    examples = tuning_renderings(set_dir) + generated_songs()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump((catalogue, examples), f)
    return examples


# -- model ------------------------------------------------------------------------------------


class BeatNet(nn.Module):
    """The torch twin of segue.structure.beat_activation.BeatActivation."""

    def __init__(self, channels: int = CHANNELS, dilations: tuple[int, ...] = DILATIONS) -> None:
        super().__init__()
        self.dilations = dilations
        self.inputs = nn.Conv1d(STEP_FRAMES * INPUTS, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(channels, channels, KERNEL, padding=d * (KERNEL // 2), dilation=d)
            for d in dilations
        )
        self.output = nn.Conv1d(channels, STEP_FRAMES * TASKS, 1)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, INPUTS, frames] (frames a multiple of STEP_FRAMES) → logits
        [batch, TASKS, frames]."""
        batch, channels, frames = x.shape
        steps = frames // STEP_FRAMES
        # [batch, INPUTS, steps, STEP_FRAMES] → channels ordered (frame in step, input).
        x = x.reshape(batch, channels, steps, STEP_FRAMES).permute(0, 3, 1, 2)
        h = functional.elu(self.inputs(x.reshape(batch, STEP_FRAMES * channels, steps)))
        for block in self.blocks:
            h = h + self.dropout(functional.elu(block(h)))
        out = self.output(h).reshape(batch, STEP_FRAMES, TASKS, steps)
        logits: torch.Tensor = out.permute(0, 2, 3, 1).reshape(batch, TASKS, frames)
        return logits

    def export(self) -> BeatActivation:
        """The numpy network with these weights."""

        def conv(layer: nn.Module, dilation: int = 1) -> Conv:
            weight = layer.weight.detach().numpy()  # type: ignore[operator]
            bias = layer.bias.detach().numpy()  # type: ignore[operator]
            # [out, in, kernel] → [kernel, in, out]
            return Conv(np.ascontiguousarray(weight.transpose(2, 1, 0)), bias.copy(), dilation)

        blocks = tuple(conv(b, d) for b, d in zip(self.blocks, self.dilations, strict=True))
        return BeatActivation(conv(self.inputs), blocks, conv(self.output))


# -- batches ----------------------------------------------------------------------------------


def targets(times_s: F64, frames: int) -> F32:
    """1 on each labelled frame, NEIGHBOUR_TARGET on the frames either side."""
    out = np.zeros(frames, np.float32)
    index = np.round(times_s * ONSET_FPS).astype(int)
    index = index[(index >= 0) & (index < frames)]
    for shift in (-1, 1):
        near = np.clip(index + shift, 0, frames - 1)
        out[near] = np.maximum(out[near], NEIGHBOUR_TARGET)
    out[index] = 1.0
    return out


def augmented_crop(example: Example, rng: np.random.Generator) -> tuple[F32, F32]:
    """A random crop of CROP_FRAMES frames, stretched and scaled: inputs [INPUTS, crop] and
    targets [2, crop]."""
    stretch = float(np.exp(rng.uniform(*np.log(STRETCH))))  # > 1: slower
    frames = len(example.inputs)
    span = min(frames, int(CROP_FRAMES / stretch))
    start = int(rng.integers(0, frames - span + 1))
    positions = start + np.arange(CROP_FRAMES) / stretch
    valid = positions <= frames - 1
    source = np.arange(frames)
    x = np.stack([np.interp(positions, source, c) for c in example.inputs.T]).astype(np.float32)
    gain = float(10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20))
    x = np.log1p(np.expm1(x) * gain) * valid
    beats = (example.beats_s * ONSET_FPS - start) * stretch / ONSET_FPS
    downs = (example.downbeats_s * ONSET_FPS - start) * stretch / ONSET_FPS
    y = np.stack([targets(beats, CROP_FRAMES), targets(downs, CROP_FRAMES)]) * valid
    return x.astype(np.float32), y.astype(np.float32)


def batch(examples: list[Example], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    picks = rng.integers(0, len(examples), BATCH)
    crops = [augmented_crop(examples[i], rng) for i in picks]
    return torch.from_numpy(np.stack([c[0] for c in crops])), torch.from_numpy(
        np.stack([c[1] for c in crops])
    )


def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pos_weight = torch.tensor(POS_WEIGHT).view(1, 2, 1)
    each = functional.binary_cross_entropy_with_logits(
        logits, y, pos_weight=pos_weight, reduction="none"
    )
    return each[:, 0].mean() + DOWNBEAT_WEIGHT * each[:, 1].mean()


# -- evaluation -------------------------------------------------------------------------------


def peak_beats(activation: F32) -> F64:
    """Beat times (s) at the activation's local maxima above PEAK_THRESHOLD."""
    peaks, _ = scipy.signal.find_peaks(activation, height=PEAK_THRESHOLD, distance=5)
    out: F64 = peaks / ONSET_FPS
    return out


def peak_f_measure(network: BeatActivation, examples: list[Example]) -> float:
    """Mean beat F-measure of the activation's peaks (no tracking) over `examples`."""
    scores = []
    for ex in examples:
        est = mir_eval.beat.trim_beats(peak_beats(network(ex.inputs)))
        ref = mir_eval.beat.trim_beats(ex.beats_s)
        scores.append(float(mir_eval.beat.f_measure(ref, est)) if len(est) > 1 else 0.0)
    return float(np.mean(scores)) if scores else 0.0


# -- training ---------------------------------------------------------------------------------


def train(
    examples: list[Example],
    validation: list[Example],
    steps: int = STEPS,
    channels: int = CHANNELS,
    seed: int = SEED,
    log_every: int = 500,
) -> BeatActivation:
    """Trains a network on `examples`, reporting the loss and the peak F-measure on
    `validation` (when given) as it goes; returns the numpy network."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = BeatNet(channels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, MAX_LR, total_steps=steps)
    start, running = time.monotonic(), 0.0
    for step in range(1, steps + 1):
        x, y = batch(examples, rng)
        loss = loss_of(model(x), y)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimiser.step()
        schedule.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            model.eval()
            _report(step, running / log_every, model.export(), validation, start)
            model.train()
            running = 0.0
    model.eval()
    return model.export()


def _report(
    step: int, loss: float, network: BeatActivation, validation: list[Example], start: float
) -> None:
    scored = f", validation peak F {peak_f_measure(network, validation):.3f}" if validation else ""
    print(f"step {step}: loss {loss:.4f}{scored} ({time.monotonic() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set-dir", type=Path, default=midi_set.SET_DIR)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--cross", action="store_true", help="train and score across sources")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    examples = load_examples(args.set_dir)
    groups = ", ".join(f"{g} {sum(e.group == g for e in examples)}" for g in GROUPS)
    print(f"{len(examples)} examples: {groups}")
    if args.cross:
        for held in GROUPS[:2]:
            train_on = [e for e in examples if e.group != held]
            scored = [e for e in examples if e.group == held]
            print(f"-- held out: {held}")
            train(train_on, scored, args.steps, args.channels)
        return
    network = train(examples, [], args.steps, args.channels)
    network.save(args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
