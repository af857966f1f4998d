"""The shipped ONNX graphs meet their I/O contracts (models/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"
STREAM = MODELS / "segue_stream.onnx"
MECOMP_COMPATIBLE = MODELS / "audio_embedding_model.onnx"
STREAM_OUTPUTS = ["embedding", "entry", "exit", "feel", "frames", "state_out"]
METADATA_KEYS = [
    "segue.name",
    "segue.version",
    "segue.sample_rate_hz",
    "segue.window_samples",
    "segue.state_dim",
    "segue.embedding_dim",
    "segue.transition_dim",
    "segue.feel_dim",
    "segue.frames_per_window",
    "segue.frame_hop_samples",
    "segue.n_mels",
]


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def stream() -> ort.InferenceSession:
    return _session(STREAM)


@pytest.fixture(scope="module")
def mecomp() -> ort.InferenceSession:
    return _session(MECOMP_COMPATIBLE)


@pytest.fixture(scope="module")
def meta(stream: ort.InferenceSession) -> dict[str, str]:
    return dict(stream.get_modelmeta().custom_metadata_map)


def _music_like(batch: int, seconds: float, seed: int) -> np.ndarray:
    """Noise plus decaying tones: enough structure to exercise every layer."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 22050)
    t = np.arange(n) / 22050
    out = 0.05 * rng.standard_normal((batch, n))
    for b in range(batch):
        for _ in range(6):
            f, onset = rng.uniform(60, 4000), rng.uniform(0, seconds)
            env = np.exp(-4 * np.clip(t - onset, 0, None)) * (t >= onset)
            out[b] += 0.3 * env * np.sin(2 * np.pi * f * t)
    return out.astype(np.float32)


def _zeros(meta: dict[str, str], batch: int) -> np.ndarray:
    return np.zeros((batch, int(meta["segue.state_dim"])), np.float32)


def test_both_exports_are_at_most_one_megabyte() -> None:
    assert STREAM.stat().st_size <= 1_000_000
    assert MECOMP_COMPATIBLE.stat().st_size <= 1_000_000


def test_stream_graph_declares_contract_names_dtypes_and_dynamic_axes() -> None:
    model = onnx.load(str(STREAM))
    ins = {i.name: i.type.tensor_type for i in model.graph.input}
    outs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(ins) == ["pcm", "state"]
    assert list(outs) == STREAM_OUTPUTS
    for t in [*ins.values(), *outs.values()]:
        assert t.elem_type == onnx.TensorProto.FLOAT
    pcm_dims = ins["pcm"].shape.dim
    assert pcm_dims[0].dim_param and pcm_dims[1].dim_param
    assert ins["state"].shape.dim[0].dim_param
    for name in ["embedding", "entry", "exit", "frames"]:
        dims = outs[name].shape.dim
        assert dims[0].dim_param and dims[1].dim_param, name


def test_stream_graph_carries_all_metadata_with_consistent_values(
    meta: dict[str, str],
) -> None:
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["segue.sample_rate_hz"] == "22050"
    assert meta["segue.feel_dim"] == "32"
    window = int(meta["segue.window_samples"])
    assert window <= 22050
    assert int(meta["segue.frames_per_window"]) * int(meta["segue.frame_hop_samples"]) == window


def test_stream_outputs_have_documented_shapes_and_unit_norms(
    stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    window, batch, n_win = int(meta["segue.window_samples"]), 3, 4
    pcm = _music_like(batch, n_win * window / 22050, seed=1)
    emb, entry, exit_, feel, frames, state = stream.run(
        None, {"pcm": pcm, "state": _zeros(meta, batch)}
    )
    assert emb.shape == (batch, n_win, int(meta["segue.embedding_dim"]))
    assert entry.shape == exit_.shape == (batch, n_win, int(meta["segue.transition_dim"]))
    assert feel.shape == (batch, 32)
    assert frames.shape == (
        batch,
        n_win * int(meta["segue.frames_per_window"]),
        int(meta["segue.n_mels"]),
    )
    assert state.shape == (batch, int(meta["segue.state_dim"]))
    for v in [emb, entry, exit_, feel]:
        np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-5)
    assert np.isfinite(frames).all() and np.isfinite(state).all()


def test_streaming_over_random_chunkings_equals_one_offline_pass(
    stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    window, batch, n_win = int(meta["segue.window_samples"]), 2, 9
    pcm = _music_like(batch, n_win * window / 22050, seed=2)
    offline = stream.run(None, {"pcm": pcm, "state": _zeros(meta, batch)})
    rng = np.random.default_rng(3)
    for _ in range(3):
        state = _zeros(meta, batch)
        per_window: list[list[np.ndarray]] = [[], [], [], []]
        done = 0
        while done < n_win:
            take = int(rng.integers(1, 4))
            take = min(take, n_win - done)
            chunk = pcm[:, done * window : (done + take) * window]
            emb, entry, exit_, feel, frames, state = stream.run(
                None, {"pcm": chunk, "state": state}
            )
            for acc, v in zip(per_window, [emb, entry, exit_, frames], strict=True):
                acc.append(v)
            done += take
        for i, acc in enumerate(per_window):
            target = offline[[0, 1, 2, 4][i]]
            np.testing.assert_allclose(np.concatenate(acc, axis=1), target, atol=1e-5)
        np.testing.assert_allclose(feel, offline[3], atol=1e-5)
        np.testing.assert_allclose(state, offline[5], atol=1e-5)


def test_entry_depends_only_on_its_own_window(
    stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    window = int(meta["segue.window_samples"])
    pcm = _music_like(1, 3 * window / 22050, seed=4)
    whole = stream.run(None, {"pcm": pcm, "state": _zeros(meta, 1)})[1]
    alone = stream.run(None, {"pcm": pcm[:, 2 * window :], "state": _zeros(meta, 1)})[1]
    np.testing.assert_allclose(whole[:, 2], alone[:, 0], atol=1e-5)


def test_a_new_song_state_differs_from_a_continued_one(
    stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    window = int(meta["segue.window_samples"])
    pcm = _music_like(1, 2 * window / 22050, seed=5)
    first = stream.run(None, {"pcm": pcm[:, :window], "state": _zeros(meta, 1)})
    fresh = stream.run(None, {"pcm": pcm[:, window:], "state": _zeros(meta, 1)})
    continued = stream.run(None, {"pcm": pcm[:, window:], "state": first[5]})
    assert not np.allclose(fresh[3], continued[3], atol=1e-4)


def test_mecomp_compatible_graph_matches_mecomps_declared_interface() -> None:
    model = onnx.load(str(MECOMP_COMPATIBLE))
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "audio" and out.name == "embedding"
    assert [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch_size", "num_samples"]
    out_dims = out.type.tensor_type.shape.dim
    assert out_dims[0].dim_param and out_dims[1].dim_value == 32
    assert (
        inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    )


@pytest.mark.parametrize("samples", [22050, 22051, 33075, 5 * 22050 - 1, 7 * 22050 + 4321])
def test_mecomp_compatible_graph_accepts_any_length_of_at_least_one_second(
    mecomp: ort.InferenceSession, samples: int
) -> None:
    audio = _music_like(2, samples / 22050, seed=samples)[:, :samples]
    (emb,) = mecomp.run(None, {"audio": audio})
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_mecomp_compatible_graph_ignores_the_trailing_partial_window(
    mecomp: ort.InferenceSession,
) -> None:
    audio = _music_like(1, 3.5, seed=6)
    whole = mecomp.run(None, {"audio": audio[:, : 3 * 22050]})[0]
    ragged = mecomp.run(None, {"audio": audio})[0]
    np.testing.assert_allclose(whole, ragged, atol=1e-6)


def test_mecomp_compatible_feel_equals_the_stream_feel(
    mecomp: ort.InferenceSession, stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    audio = _music_like(2, 4.0, seed=7)
    feel = stream.run(None, {"pcm": audio, "state": _zeros(meta, 2)})[3]
    np.testing.assert_allclose(mecomp.run(None, {"audio": audio})[0], feel, atol=1e-5)


def test_each_item_of_a_batch_gets_the_output_it_gets_alone(
    mecomp: ort.InferenceSession,
) -> None:
    audio = _music_like(4, 3.2, seed=8)
    batched = mecomp.run(None, {"audio": audio})[0]
    for i in range(4):
        alone = mecomp.run(None, {"audio": audio[i : i + 1]})[0]
        np.testing.assert_allclose(batched[i : i + 1], alone, atol=1e-5)


def test_different_music_gets_different_feel(mecomp: ort.InferenceSession) -> None:
    a, b = _music_like(1, 3.0, seed=9), _music_like(1, 3.0, seed=10)
    fa, fb = mecomp.run(None, {"audio": a})[0], mecomp.run(None, {"audio": b})[0]
    assert float((fa * fb).sum()) < 0.9999


def test_frames_are_the_documented_log_mel_front_end(
    stream: ort.InferenceSession, meta: dict[str, str]
) -> None:
    from training.frontend import LOG_FLOOR, dft_basis, mel_matrix, used_bins

    hop, n_bins = int(meta["segue.frame_hop_samples"]), len(used_bins())
    pcm = _music_like(1, 2.0, seed=11)
    frames = stream.run(None, {"pcm": pcm, "state": _zeros(meta, 1)})[4][0]
    spec = pcm[0].astype(np.float64).reshape(-1, hop) @ dft_basis()
    power = spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2
    expected = np.log(power @ mel_matrix()[used_bins()] + LOG_FLOOR)
    # The graph stores its basis as float16: about 1e-3 relative error in each band's power.
    np.testing.assert_allclose(frames, expected, atol=2e-2)
