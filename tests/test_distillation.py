"""Distilling musicnn into the feel vector: the targets follow the audio's time, the relation
loss rewards a student that ranks pairs like the teacher, and a tiny run trains end to end
through the real teacher environment (skipped, with the reason, where it is not built)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from training_fixtures import song, tiny_config

from training.catalog import Track, save_catalog
from training.teacher_cache import teacher_available
from training.teacher_targets import PATCH_S, TeacherTargets, build
from training.train import Config, Distiller, train

NO_TEACHER = "musicnn's environment (.venv-teacher) is not built: run `make teacher-env`"
MODEL = "MTT_musicnn"


def _targets(folder: Path, tracks: dict[str, np.ndarray]) -> list[Track]:
    """Writes hand-made teacher outputs (penultimate = given rows, tags = sigmoid of them)."""
    out = []
    for name, pen in tracks.items():
        np.savez(
            folder / f"{name}.npz",
            **{
                f"{MODEL}/penultimate": pen.astype(np.float32),
                f"{MODEL}/taggram": (1 / (1 + np.exp(-pen[:, :50]))).astype(np.float32),
            },
        )
        out.append(Track(id=f"t/{name}", source="t", album="t", cache=f"{name}.npy"))
    return out


def test_a_span_averages_the_patches_whose_centres_lie_inside_it(tmp_path: Path) -> None:
    pen = np.arange(4 * 200, dtype=np.float64).reshape(4, 200)
    (track,) = _targets(tmp_path, {"a": pen})
    targets = TeacherTargets([track], tmp_path, MODEL)
    first_two, _ = targets.span(track.id, 0.0, 2 * PATCH_S)
    np.testing.assert_allclose(first_two, pen[:2].mean(0))
    # A span shorter than a patch, between two centres, takes the nearest patch.
    nearest, _ = targets.span(track.id, 2.6 * PATCH_S, 2.7 * PATCH_S)
    np.testing.assert_allclose(nearest, pen[2])


def test_the_relation_loss_prefers_a_student_that_ranks_pairs_like_the_teacher(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    pens = {f"s{i}": rng.standard_normal((3, 200)) + 3.0 for i in range(12)}
    tracks = _targets(tmp_path, pens)
    distiller = Distiller(TeacherTargets(tracks, tmp_path, MODEL), Config())
    spans = [(t.id, 0.0, 3 * PATCH_S) for t in tracks]
    teacher = torch.tensor(np.stack([pens[t.cache[:-4]].mean(0) for t in tracks])).float()
    centred = teacher - distiller.centre
    # A 32-dimensional student that keeps the teacher's geometry (random projection) ...
    projection = torch.randn(200, 32, generator=torch.Generator().manual_seed(0))
    aligned = torch.nn.functional.normalize(centred @ projection, dim=-1)
    # ... and one with the same vectors given to the wrong tracks.
    shuffled = aligned[torch.randperm(len(aligned), generator=torch.Generator().manual_seed(1))]
    good = distiller.losses(aligned.float(), spans)["distill"]
    bad = distiller.losses(shuffled.float(), spans)["distill"]
    assert float(good) < 0.8 * float(bad)


@pytest.mark.slow
@pytest.mark.skipif(not teacher_available(), reason=NO_TEACHER)
def test_a_tiny_run_distils_the_real_teacher(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    tracks = []
    for i in range(6):
        np.save(data / "cache" / f"song{i}.npy", song(i, 9.0))
        tracks.append(
            Track(id=f"synth/{i}", source="synth", album="a", cache=f"song{i}.npy", seconds=9.0)
        )
    save_catalog(tracks, data / "catalog.json")
    files = build(tracks, data / "cache", data / "teacher")
    assert all(f.exists() for f in files)

    def config(teacher: str, out: Path) -> Config:
        tiny = tiny_config(data, out)
        return replace(tiny, labelled_per_batch=0, teacher=teacher, teacher_dir=data / "teacher")

    taught = train(config(MODEL, tmp_path / "a")).state_dict()
    plain = train(config("", tmp_path / "b")).state_dict()
    assert all(torch.isfinite(v).all() for v in taught.values())
    # Same seed and batches: only the teacher's losses can make the weights differ.
    assert any(not torch.equal(taught[k], plain[k]) for k in taught)
