"""A few training steps on tiny generated music run, export valid graphs and are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from training_fixtures import song, tiny_config

from training.catalog import Track, save_catalog, split
from training.export import export_all
from training.train import next_segment_ignore, train

# Starts real servers or trains: left out of `make test-fast`.
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    (data / "cache").mkdir()
    tracks = []
    for i in range(12):
        labelled = i < 6
        tid = f"{'immich' if labelled else 'synth'}/song{i}"
        npy = f"song{i}.npy"
        np.save(data / "cache" / npy, song(i, 9.0))
        tracks.append(
            Track(
                id=tid,
                source="immich" if labelled else "synth",
                album="a" if i % 2 else "b",
                mood=("calm" if i % 2 else "happy") if labelled else None,
                style=("acoustic" if i % 3 else "electronic") if labelled else None,
                cache=npy,
                seconds=9.0,
            )
        )
    save_catalog(tracks, data / "catalog.json")
    return data


def test_split_holds_out_whole_tracks_deterministically(tiny_data: Path) -> None:
    from training.catalog import load_catalog

    tracks = load_catalog(tiny_data / "catalog.json")
    train_a, eval_a = split(tracks)
    _, eval_b = split(list(reversed(tracks)))
    assert {t.id for t in eval_a} == {t.id for t in eval_b}
    assert eval_a and train_a
    assert not {t.id for t in train_a} & {t.id for t in eval_a}


def test_a_few_steps_train_and_export_valid_graphs(tiny_data: Path, tmp_path: Path) -> None:
    net = train(tiny_config(tiny_data, tmp_path))
    export_all(net, tmp_path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(tmp_path / "audio_embedding_model.onnx"), so, providers=["CPUExecutionProvider"]
    )
    (emb,) = sess.run(None, {"audio": song(99, 2.5).astype(np.float32)[None]})
    assert emb.shape == (1, 32) and np.isfinite(emb).all()


def test_training_moves_the_weights(tiny_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(1234)
    from training.model import SegueNet

    initial = SegueNet().state_dict()
    trained = train(tiny_config(tiny_data, tmp_path)).state_dict()
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)


def test_a_seeded_run_is_deterministic(tiny_data: Path, tmp_path: Path) -> None:
    a = train(tiny_config(tiny_data, tmp_path)).state_dict()
    b = train(tiny_config(tiny_data, tmp_path)).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_next_segment_loss_ignores_only_the_other_crops_copy_of_the_answer() -> None:
    # Two tracks, two crops each, 4 windows per crop. Track 0's second crop starts 0.5 s after
    # its first, so its windows overlap the first crop's; track 1's crops are far apart.
    times = torch.tensor(
        [
            [10.0, 11.0, 12.0, 13.0],
            [10.5, 11.5, 12.5, 13.5],
            [10.0, 11.0, 12.0, 13.0],
            [50.0, 51.0, 52.0, 53.0],
        ]
    )
    answer = 2  # crop 0, window 2 (starts at 12.0 s)
    ignore = next_segment_ignore(times, torch.tensor([answer]), seconds=1.0)[0]
    assert ignore.nonzero().flatten().tolist() == [5, 6]  # crop 1 at 11.5 s and 12.5 s
    # Same crop neighbours and another track at the same time stay as negatives.
    assert not ignore[[0, 1, 3, 8, 9, 10, 11]].any()
    assert not ignore[answer]


def test_next_segment_loss_keeps_every_negative_when_the_ignore_span_is_zero() -> None:
    times = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    assert not next_segment_ignore(times, torch.tensor([1, 2, 4]), seconds=0.0).any()
