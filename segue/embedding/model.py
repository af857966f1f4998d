"""The Segue streaming ONNX model: session, execution provider and contract metadata.

Every shape and rate comes from the model's `segue.*` metadata, so a retrained model with the
same contract drops in without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from segue.files import sha256_of

FloatArray = npt.NDArray[np.float32]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OUTPUTS = ("embedding", "entry", "exit", "feel", "frames", "state_out")


class ModelError(RuntimeError):
    """The model file is missing, unreadable, or breaks the Segue stream contract."""


@dataclass(frozen=True)
class ModelSpec:
    """The contract values read from the model's metadata."""

    name: str
    version: str
    sha256: str
    sample_rate_hz: int
    window_samples: int
    state_dim: int
    embedding_dim: int
    transition_dim: int
    feel_dim: int
    frames_per_window: int
    frame_hop_samples: int
    n_mels: int

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate_hz


@dataclass(frozen=True)
class ModelOutputs:
    """One run's outputs for a batch of B rows of k windows each."""

    embedding: FloatArray  # [B, k, embedding_dim]
    entry: FloatArray  # [B, k, transition_dim]
    exit: FloatArray  # [B, k, transition_dim]
    feel: FloatArray  # [B, feel_dim]
    frames: FloatArray  # [B, k * frames_per_window, n_mels]
    state: FloatArray  # [B, state_dim]

    def row(self, i: int) -> ModelOutputs:
        """Row i as a batch of one (views, no copies)."""
        return ModelOutputs(
            embedding=self.embedding[i : i + 1],
            entry=self.entry[i : i + 1],
            exit=self.exit[i : i + 1],
            feel=self.feel[i : i + 1],
            frames=self.frames[i : i + 1],
            state=self.state[i : i + 1],
        )


def _read_spec(session: ort.InferenceSession, sha256: str) -> ModelSpec:
    meta: dict[str, str] = session.get_modelmeta().custom_metadata_map

    def get(key: str) -> str:
        value = meta.get(f"segue.{key}")
        if value is None:
            raise ModelError(f"model metadata lacks segue.{key}")
        return value

    def get_int(key: str) -> int:
        raw = get(key)
        try:
            value = int(raw)
        except ValueError as e:
            raise ModelError(f"model metadata segue.{key}={raw!r} is not an integer") from e
        if value <= 0:
            raise ModelError(f"model metadata segue.{key}={value} must be positive")
        return value

    return ModelSpec(
        name=get("name"),
        version=get("version"),
        sha256=sha256,
        sample_rate_hz=get_int("sample_rate_hz"),
        window_samples=get_int("window_samples"),
        state_dim=get_int("state_dim"),
        embedding_dim=get_int("embedding_dim"),
        transition_dim=get_int("transition_dim"),
        feel_dim=get_int("feel_dim"),
        frames_per_window=get_int("frames_per_window"),
        frame_hop_samples=get_int("frame_hop_samples"),
        n_mels=get_int("n_mels"),
    )


def choose_providers(preference: str) -> list[str]:
    """Providers to ask ONNX Runtime for: `auto`, `cpu` or `cuda`."""
    available = ort.get_available_providers()
    if preference == "cpu":
        return [CPU]
    if preference == "cuda":
        if CUDA not in available:
            raise ModelError(
                f"SEGUE_EXECUTION_PROVIDER=cuda but this onnxruntime offers {available}; "
                "install onnxruntime-gpu (extra `gpu`) on a CUDA machine"
            )
        return [CUDA, CPU]
    if preference == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ModelError(f"execution provider must be auto, cpu or cuda, got {preference!r}")


class StreamModel:
    """An ONNX Runtime session of the Segue stream model. `run` is thread-safe."""

    def __init__(self, path: str | Path, *, provider: str = "auto", intra_threads: int = 1) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        requested = choose_providers(provider)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=requested)
        except Exception as e:  # ORT raises its own untyped exception classes
            raise ModelError(f"could not load {path}: {e}") from e
        # onnxruntime-gpu lists CUDA even when it cannot initialise it and falls back to CPU.
        self.provider: str = self._session.get_providers()[0]
        if provider == "cuda" and self.provider != CUDA:
            raise ModelError(f"CUDA was requested but ONNX Runtime fell back to {self.provider}")
        self.path = path
        self.spec = _read_spec(self._session, sha256_of(path))
        names = {o.name for o in self._session.get_outputs()}
        missing = [n for n in OUTPUTS if n not in names]
        if missing:
            raise ModelError(f"model lacks outputs {missing}")

    def zero_state(self, batch: int = 1) -> FloatArray:
        return np.zeros((batch, self.spec.state_dim), dtype=np.float32)

    def run(self, pcm: FloatArray, state: FloatArray) -> ModelOutputs:
        """pcm [B, k * window_samples] at the model rate, state [B, state_dim]."""
        if pcm.ndim != 2 or pcm.shape[1] == 0 or pcm.shape[1] % self.spec.window_samples:
            raise ValueError(
                f"pcm must be [batch, k * {self.spec.window_samples}], got {pcm.shape}"
            )
        values = self._session.run(
            list(OUTPUTS),
            {"pcm": np.ascontiguousarray(pcm, np.float32),
             "state": np.ascontiguousarray(state, np.float32)},
        )
        arrays = [np.asarray(v, dtype=np.float32) for v in values]
        return ModelOutputs(*arrays)


__all__ = [
    "CPU", "CUDA", "ModelError", "ModelOutputs", "ModelSpec", "StreamModel", "choose_providers",
]
