"""Exported weights are stored as float16 or per-channel int8, and read back exactly as stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from training_fixtures import song

from training.export import export_all
from training.model import SegueNet, conv_channels
from training.onnx_weights import net_from_onnx
from training.weight_storage import PRECISIONS, precision_of, quantize_int8

# Exports real graphs: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net() -> SegueNet:
    torch.manual_seed(7)
    return SegueNet(width=1.5).eval()


@pytest.fixture(scope="module")
def exports(net: SegueNet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for precision in PRECISIONS:
        folder = tmp_path_factory.mktemp(precision)
        export_all(net, folder, precision=precision)
        out[precision] = folder
    return out


def _run(folder: Path, pcm: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(
        str(folder / "segue_stream.onnx"), providers=["CPUExecutionProvider"]
    )
    state = np.zeros((pcm.shape[0], sess.get_inputs()[1].shape[1]), np.float32)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"pcm": pcm, "state": state}), strict=True))


def test_int8_keeps_one_scale_per_output_channel_and_rounds_to_half_a_step() -> None:
    rng = np.random.default_rng(0)
    # Channels of very different size: one shared scale would flatten the small one to zeros.
    w = (rng.standard_normal((64, 3)) * np.array([1e-3, 1.0, 50.0])).astype(np.float32)
    q, scale = quantize_int8(w, axis=1)
    assert q.dtype == np.int8 and scale.shape == (1, 3)
    assert np.abs(q).max(axis=0).tolist() == [127, 127, 127]
    assert (np.abs(q * scale - w) <= scale / 2 + 1e-9).all()


def test_an_all_zero_channel_stays_zero() -> None:
    w = np.zeros((4, 2), np.float32)
    w[:, 1] = [1.0, -2.0, 0.5, 0.0]
    q, scale = quantize_int8(w, axis=1)
    assert (q[:, 0] == 0).all() and np.isfinite(scale).all()


def test_int8_files_are_smaller_and_say_how_they_store_their_weights(
    exports: dict[str, Path],
) -> None:
    for name in ("segue_stream.onnx", "audio_embedding_model.onnx"):
        half, int8 = (exports[p] / name for p in ("float16", "int8"))
        assert int8.stat().st_size < 0.8 * half.stat().st_size
        model = onnx.load(str(int8))
        assert precision_of(model.graph) == "int8"
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["segue.weight_precision"] == "int8"
    assert precision_of(onnx.load(str(exports["float16"] / "segue_stream.onnx")).graph) == "float16"


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_weights_read_back_from_a_file_compute_what_onnx_runtime_computes(
    exports: dict[str, Path], precision: str
) -> None:
    folder = exports[precision]
    back = net_from_onnx(folder / "segue_stream.onnx")
    pcm = np.stack([song(3, 3.0), song(4, 3.0)]).astype(np.float32)
    got = _run(folder, pcm)
    with torch.no_grad():
        ref = back(torch.from_numpy(pcm), torch.zeros(2, got["state_out"].shape[1]))
    assert np.abs(ref.feel.numpy() - got["feel"]).max() < 1e-4
    assert np.abs(ref.entry.numpy() - got["entry"]).max() < 1e-4


def test_the_width_is_read_back_from_the_file(exports: dict[str, Path]) -> None:
    back = net_from_onnx(exports["int8"] / "segue_stream.onnx")
    assert back.width == 1.5
    last_conv = back.get_submodule("encoder.convs.2.0")
    assert isinstance(last_conv, torch.nn.Conv1d)
    assert last_conv.out_channels == conv_channels(1.5)[2] == 192


def test_int8_moves_the_outputs_only_a_little_and_leaves_the_front_end_alone(
    exports: dict[str, Path],
) -> None:
    pcm = np.stack([song(5, 4.0), song(6, 4.0)]).astype(np.float32)
    half, int8 = _run(exports["float16"], pcm), _run(exports["int8"], pcm)
    assert np.array_equal(half["frames"], int8["frames"])
    for name in ("feel", "embedding", "entry", "exit"):
        cosine = (half[name] * int8[name]).sum(axis=-1)  # unit vectors
        assert cosine.min() > 0.99, name
    assert not np.array_equal(half["feel"], int8["feel"])
