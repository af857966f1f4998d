"""musicnn's outputs come from its own environment once, then from the disk cache; without the
environment the caller gets a typed error that says how to build it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.teacher_cache import (
    SAMPLE_RATE_HZ,
    TeacherUnavailableError,
    teacher_available,
    teacher_outputs,
)

NO_TEACHER = "musicnn's environment (.venv-teacher) is not built: run `make teacher-env`"


def _clips(seconds: float = 4.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    notes = [np.sin(2 * np.pi * hz * t) * np.exp(-3 * (t % 0.5)) for hz in (262.0, 392.0)]
    return (0.3 * np.stack(notes)).astype(np.float32)


def test_without_the_environment_an_uncached_request_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(TeacherUnavailableError, match="make teacher-env"):
        teacher_outputs(_clips(), cache_dir=tmp_path, python=tmp_path / "no-python")


@pytest.mark.slow
@pytest.mark.skipif(not teacher_available(), reason=NO_TEACHER)
def test_teacher_outputs_are_computed_once_and_then_read_from_the_cache(tmp_path: Path) -> None:
    clips = _clips()
    first = teacher_outputs(clips, cache_dir=tmp_path)
    assert first["MTT_musicnn/penultimate"].shape == (2, 200)
    assert first["MSD_musicnn/taggram"].shape == (2, 50)
    probs = first["MTT_musicnn/taggram"]
    assert ((probs >= 0) & (probs <= 1)).all()
    # Two different tones: different embeddings.
    pen = first["MTT_musicnn/penultimate"]
    assert not np.allclose(pen[0], pen[1])
    # The second call never needs the environment: it reads the cache.
    again = teacher_outputs(clips, cache_dir=tmp_path, python=tmp_path / "no-python")
    assert all(np.array_equal(first[k], again[k]) for k in first)
