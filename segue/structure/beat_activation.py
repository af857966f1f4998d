"""A learned beat activation: how likely each onset frame is to hold a beat.

A small non-causal temporal convolution network reads the log of the normalised onset
envelopes (all bands and each band group, at the onset frame rate) and gives a beat
probability per frame. It steps two frames at a time, each step reading both frames' inputs
and giving both frames' outputs, so its convolutions run at half the frame rate without
losing the frame's timing: a third of the cost, which keeps it within the structure engine's
share of the embedder's time. After an input convolution come residual blocks of dilated
convolutions (x + elu(conv(x))); a last pointwise convolution gives the logits.

It runs in numpy from weights shipped beside this module (`beat_activation.npz`, 56 kB),
trained by `training/train_beat_activation.py`; models/README.md is their model card.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

# Package data, so that every install and image of the engine has them.
DEFAULT_WEIGHTS = Path(__file__).with_name("beat_activation.npz")
# Input channels per frame: the all-band envelope, then the band groups low to high.
INPUTS = 5
# Frames per network step, and outputs per frame (beat, downbeat).
STEP_FRAMES = 2
TASKS = 2


def activation_inputs(full: F32, bands: F32) -> F32:
    """The network's input [frames, INPUTS]: log(1 + envelope) of the normalised all-band
    envelope and of each band group's [frames, BAND_GROUPS] (see normalise_onset)."""
    stacked = np.concatenate([full[:, None], bands], axis=1)
    out: F32 = np.log1p(np.maximum(stacked, 0.0)).astype(np.float32)
    return out


@dataclass(frozen=True)
class Conv:
    """A centred 1-D convolution over steps: weight [kernel, in, out], bias [out], dilation
    in steps; zero-padded at both ends."""

    weight: F32
    bias: F32
    dilation: int = 1

    def __call__(self, x: F32) -> F32:
        """x [steps, in] → [steps, out]."""
        kernel, steps = len(self.weight), len(x)
        pad = self.dilation * (kernel // 2)
        padded = np.pad(x, ((pad, pad), (0, 0))) if pad else x
        out: F32 = padded[:steps] @ self.weight[0]
        for tap in range(1, kernel):
            start = tap * self.dilation
            out += padded[start : start + steps] @ self.weight[tap]
        out += self.bias
        return out


def _elu(x: F32) -> F32:
    """ELU, in place (x is a fresh array): max(x, 0) + expm1(min(x, 0)), without the
    boolean indexing that costs five times as much."""
    negative = np.minimum(x, 0.0)
    np.expm1(negative, out=negative)
    np.maximum(x, 0.0, out=x)
    x += negative
    return x


@dataclass(frozen=True)
class BeatActivation:
    """The network: `inputs` (then ELU), the residual `blocks`, then `output`."""

    inputs: Conv
    blocks: tuple[Conv, ...]
    output: Conv

    @property
    def receptive_frames(self) -> int:
        """Frames either side of a frame that its activation may depend on."""
        convs = (self.inputs, *self.blocks, self.output)
        steps = sum(c.dilation * (len(c.weight) // 2) for c in convs)
        return STEP_FRAMES * (steps + 1)

    def logits(self, x: F32) -> F32:
        """x [frames, INPUTS] → logits [frames, TASKS] (beat, downbeat)."""
        frames = len(x)
        steps = -(-frames // STEP_FRAMES)
        padded = np.pad(x, ((0, steps * STEP_FRAMES - frames), (0, 0)))
        h = _elu(self.inputs(padded.reshape(steps, STEP_FRAMES * INPUTS)))
        for block in self.blocks:
            h += _elu(block(h))
        out: F32 = self.output(h).reshape(steps * STEP_FRAMES, TASKS)
        return out[:frames]

    def __call__(self, x: F32) -> F32:
        """Beat probability (0-1) per frame of x [frames, INPUTS]."""
        if len(x) == 0:
            return np.zeros(0, np.float32)
        logit = self.logits(x.astype(np.float32, copy=False))[:, 0]
        out: F32 = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        return out

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The weights as named arrays (the .npz layout `load` reads)."""
        named = [("inputs", self.inputs), ("output", self.output)]
        named += [(f"block{i}", c) for i, c in enumerate(self.blocks)]
        out: dict[str, npt.NDArray[np.generic]] = {}
        for name, conv in named:
            out[f"{name}.weight"] = conv.weight
            out[f"{name}.bias"] = conv.bias
            out[f"{name}.dilation"] = np.asarray(conv.dilation, np.int32)
        return out

    def save(self, path: Path) -> None:
        np.savez(path, **self.arrays())  # type: ignore[arg-type]


def _conv(stored: dict[str, npt.NDArray[np.generic]], name: str) -> Conv:
    return Conv(
        np.ascontiguousarray(stored[f"{name}.weight"], dtype=np.float32),
        np.asarray(stored[f"{name}.bias"], dtype=np.float32),
        int(stored[f"{name}.dilation"]),
    )


def load(path: Path = DEFAULT_WEIGHTS) -> BeatActivation:
    """The network stored at `path` (an .npz written by `BeatActivation.save`)."""
    with np.load(path) as file:
        stored = {k: file[k] for k in file.files}
    count = sum(1 for k in stored if k.startswith("block") and k.endswith(".weight"))
    blocks = tuple(_conv(stored, f"block{i}") for i in range(count))
    return BeatActivation(_conv(stored, "inputs"), blocks, _conv(stored, "output"))


@functools.cache
def default() -> BeatActivation:
    """The shipped network, loaded once per process."""
    return load(DEFAULT_WEIGHTS)
