"""Exports a trained SegueNet to the two ONNX contracts and checks them against torch.

- segue_stream.onnx: (pcm [B, S], state [B, STATE_DIM]) -> embedding, entry, exit, feel, frames,
  state_out. S must be a positive multiple of WINDOW_SAMPLES.
- audio_embedding_model.onnx (MECOMP drop-in): audio [B, S] -> embedding [B, 32] (the feel
  vector), S >= WINDOW_SAMPLES, the trailing partial window ignored.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.frontend import (
    FRAME_SAMPLES,
    FRAMES_PER_WINDOW,
    N_MELS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
)
from training.model import (
    EMBEDDING_DIM,
    FEEL_DIM,
    STATE_DIM,
    TRANSITION_DIM,
    Outputs,
    SegueNet,
)
from training.onnx_weights import net_from_onnx
from training.weight_storage import PRECISIONS, Precision, store

MODEL_NAME = "segue-stream"
# How the shipped graphs store their weights (training.weight_storage). int8 since 2.1.0: on
# held-out sources it scores what float16 does (bench/results/embedding_capacity_2026-12-06.md)
# in 29% fewer bytes.
PRECISION: Precision = "int8"
OPSET = 17
# ORT folds BatchNorm into the convs after the float16 rounding, so it differs from torch by a
# little more than float32 round-off.
TOLERANCE = 2e-3
STREAM_OUTPUTS = ["embedding", "entry", "exit", "feel", "frames", "state_out"]


class StreamGraph(nn.Module):
    def __init__(self, net: SegueNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pcm: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        o = self.net(pcm, state)
        return o.embedding, o.entry, o.exit, o.feel, o.frames, o.state


class MecompGraph(nn.Module):
    def __init__(self, net: SegueNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        whole = (audio.shape[1] // WINDOW_SAMPLES) * WINDOW_SAMPLES
        state = audio.new_zeros((audio.shape[0], STATE_DIM))
        out: Outputs = self.net(audio[:, :whole], state)
        return out.feel


def weights_digest(net: SegueNet, precision: Precision = PRECISION) -> str:
    # float16 files keep the digest they always had (`make train` reproduces 2.0.0's).
    h = hashlib.sha256(b"" if precision == "float16" else precision.encode())
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def stream_metadata(version: str, precision: Precision = PRECISION) -> dict[str, str]:
    return {
        "segue.name": MODEL_NAME,
        "segue.version": version,
        "segue.sample_rate_hz": str(SAMPLE_RATE_HZ),
        "segue.window_samples": str(WINDOW_SAMPLES),
        "segue.state_dim": str(STATE_DIM),
        "segue.embedding_dim": str(EMBEDDING_DIM),
        "segue.transition_dim": str(TRANSITION_DIM),
        "segue.feel_dim": str(FEEL_DIM),
        "segue.frames_per_window": str(FRAMES_PER_WINDOW),
        "segue.frame_hop_samples": str(FRAME_SAMPLES),
        "segue.n_mels": str(N_MELS),
        "segue.weight_precision": precision,
    }


def _to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but handles nn.GRU with dynamic lengths.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            f"{tmp}/graph.onnx",
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        return onnx.load(f"{tmp}/graph.onnx")


def _pin_dims(model: onnx.ModelProto, sizes: dict[str, dict[int, int]]) -> None:
    """Declares fixed output widths that the exporter leaves symbolic (e.g. after a Concat)."""
    for out in model.graph.output:
        for axis, value in sizes.get(out.name, {}).items():
            dim = out.type.tensor_type.shape.dim[axis]
            dim.Clear()
            dim.dim_value = value


def half_rounded(net: SegueNet) -> SegueNet:
    """A copy of net whose float tensors are rounded to float16 values (what the files store)."""
    q = copy.deepcopy(net).eval()
    with torch.no_grad():
        for t in q.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    return q


def _save(
    model: onnx.ModelProto, path: Path, metadata: dict[str, str], doc: str, precision: Precision
) -> None:
    store(model, precision)
    del model.metadata_props[:]
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = doc
    model.producer_name = "segue-training"
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_stream(
    net: SegueNet, path: Path, version: str, precision: Precision = PRECISION
) -> None:
    g = StreamGraph(net).eval()
    pcm = torch.randn(2, 3 * WINDOW_SAMPLES) * 0.1
    state = torch.zeros(2, STATE_DIM)
    axes = {
        "pcm": {0: "batch", 1: "samples"},
        "state": {0: "batch"},
        "embedding": {0: "batch", 1: "n_windows"},
        "entry": {0: "batch", 1: "n_windows"},
        "exit": {0: "batch", 1: "n_windows"},
        "feel": {0: "batch"},
        "frames": {0: "batch", 1: "n_frames"},
        "state_out": {0: "batch"},
    }
    model = _to_onnx(g, (pcm, state), ["pcm", "state"], STREAM_OUTPUTS, axes)
    _pin_dims(model, {"state_out": {1: STATE_DIM}, "feel": {1: FEEL_DIM}})
    doc = (
        "Segue streaming embedder. pcm: mono float32 at 22050 Hz, a positive multiple of "
        "segue.window_samples per call; state: zeros for a new song, else the last state_out."
    )
    _save(model, path, stream_metadata(version, precision), doc, precision)


def export_mecomp(
    net: SegueNet, path: Path, version: str, precision: Precision = PRECISION
) -> None:
    g = MecompGraph(net).eval()
    audio = torch.randn(2, 2 * WINDOW_SAMPLES + 100) * 0.1
    axes = {"audio": {0: "batch_size", 1: "num_samples"}, "embedding": {0: "batch_size"}}
    model = _to_onnx(g, (audio,), ["audio"], ["embedding"], axes)
    _pin_dims(model, {"embedding": {1: FEEL_DIM}})
    meta = {
        "segue.name": "segue-feel",
        "segue.version": version,
        "segue.sample_rate_hz": str(SAMPLE_RATE_HZ),
        "segue.window_samples": str(WINDOW_SAMPLES),
        "segue.weight_precision": precision,
    }
    doc = (
        "Segue feel vector, a drop-in for MECOMP's audio embedding model: audio mono float32 at "
        "22050 Hz, at least 1 s; embedding [batch, 32], L2-normalised."
    )
    _save(model, path, meta, doc, precision)


def verify_against_torch(net: SegueNet, stream_path: Path, mecomp_path: Path) -> float:
    """Max abs difference between ORT and torch over both graphs on random audio."""
    net = net.eval()
    gen = torch.Generator().manual_seed(1)
    pcm = torch.randn(3, 4 * WINDOW_SAMPLES, generator=gen) * 0.2
    state = torch.zeros(3, STATE_DIM)
    with torch.no_grad():
        ref = StreamGraph(net)(pcm, state)
        ref_feel = MecompGraph(net)(pcm[:, : 3 * WINDOW_SAMPLES + 777])
    got = _session(stream_path).run(None, {"pcm": pcm.numpy(), "state": state.numpy()})
    worst = max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got, strict=True))
    got_feel = _session(mecomp_path).run(
        None, {"audio": pcm[:, : 3 * WINDOW_SAMPLES + 777].numpy()}
    )
    worst = max(worst, float(np.abs(ref_feel.numpy() - got_feel[0]).max()))
    return worst


# 2.0.0: trained on 20 soundtracks with musicnn as a teacher (issue 12); graphs and I/O unchanged.
# 2.1.0: the same training, weights stored as int8 (training.weight_storage); I/O unchanged.
# 2.2.0: trained twice as long on a corpus twice as large (41 training sources, tracker
# modules among them); graphs, storage and I/O unchanged.
# 2.3.0: 32 tracks per step instead of 24; graphs, storage and I/O unchanged.
MODEL_VERSION = "2.3.0"


def export_all(
    net: SegueNet, models_dir: Path, version: str | None = None, precision: Precision = PRECISION
) -> str:
    """Writes both graphs into models_dir, checks them against torch; returns the version.

    Two checks: the stored weights, read back into torch, must compute what ONNX Runtime
    computes (the graph is right); and at float16 the files must stay within TOLERANCE of
    `net` itself (int8 moves the outputs further: bench/eval_embedding.py measures by how much).
    """
    net = half_rounded(net)
    version = version or f"{MODEL_VERSION}+{weights_digest(net, precision)}"
    stream = models_dir / "segue_stream.onnx"
    mecomp = models_dir / "audio_embedding_model.onnx"
    export_stream(net, stream, version, precision)
    export_mecomp(net, mecomp, version, precision)
    worst = verify_against_torch(net_from_onnx(stream), stream, mecomp)
    if precision == "float16":
        worst = max(worst, verify_against_torch(net, stream, mecomp))
    if worst > TOLERANCE:
        raise RuntimeError(f"ONNX export differs from torch by {worst:.2e}")
    return version


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Export a checkpoint to the two ONNX graphs.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISION)
    a = p.parse_args()
    saved = torch.load(a.checkpoint, map_location="cpu")
    net = SegueNet(float(saved.get("config", {}).get("width", 1.0)))
    net.load_state_dict(saved["model"])
    print(export_all(net, a.out, precision=a.precision))


if __name__ == "__main__":
    main()
