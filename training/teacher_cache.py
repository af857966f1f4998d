"""musicnn's outputs for arrays of clips, computed once in the teacher environment and cached.

Training and evaluation call teacher_outputs(); it runs training/teacher.py under
.venv-teacher/bin/python (`make teacher-env`) only for clips it has not seen, keyed by the
SHA-1 of the clip samples, so the project's own processes never import TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
TEACHER_PYTHON = Path(os.environ.get("SEGUE_TEACHER_PYTHON", ROOT / ".venv-teacher/bin/python"))
DEFAULT_CACHE = ROOT / "data" / "teacher_cache"
SAMPLE_RATE_HZ = 22050


class TeacherUnavailableError(RuntimeError):
    """The teacher environment is missing (`make teacher-env` builds it)."""


def teacher_available(python: Path = TEACHER_PYTHON) -> bool:
    """True when the teacher's interpreter exists and imports musicnn."""
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import musicnn"], capture_output=True)
    return probe.returncode == 0


def _key(clips: NDArray[np.float32], models: tuple[str, ...]) -> str:
    h = hashlib.sha1(np.ascontiguousarray(clips, dtype=np.float32).tobytes())
    h.update(repr((clips.shape, models)).encode())
    return h.hexdigest()


def teacher_outputs(
    clips: NDArray[np.float32],
    models: tuple[str, ...] = ("MTT_musicnn", "MSD_musicnn"),
    cache_dir: Path = DEFAULT_CACHE,
    python: Path = TEACHER_PYTHON,
) -> dict[str, NDArray[np.float32]]:
    """{"<model>/penultimate": [clips, 200], "<model>/taggram": [clips, 50]} for 22050 Hz clips.

    Raises TeacherUnavailableError when the outputs are not cached and the teacher environment
    is missing.
    """
    path = cache_dir / f"{_key(clips, models)}.npz"
    if not path.exists():
        _compute(clips, models, path, python)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def run_teacher(python: Path, args: list[str], progress: bool = False) -> None:
    """Runs training/teacher.py with args under the teacher's interpreter.

    progress: let its stderr (one line per track, and TensorFlow's notices) through to ours.
    Raises TeacherUnavailableError when that environment is missing, RuntimeError when the
    teacher fails (with the end of its stderr when it was kept).
    """
    if not teacher_available(python):
        raise TeacherUnavailableError(
            f"musicnn's environment is missing at {python}: run `make teacher-env`"
        )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [str(python), str(ROOT / "training" / "teacher.py"), *args]
    err = None if progress else subprocess.PIPE
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    if done.returncode != 0:
        said = done.stderr.decode()[-2000:] if done.stderr else "see above"
        raise RuntimeError(f"teacher failed ({done.returncode}): {said}")


def _compute(clips: NDArray[np.float32], models: tuple[str, ...], path: Path, python: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "clips.npz"
        np.savez(inp, audio=clips.astype(np.float32), sr=SAMPLE_RATE_HZ)
        out = Path(tmp) / "out.npz"
        run_teacher(python, ["clips", str(inp), str(out), "--models", *models])
        os.replace(out, path)
