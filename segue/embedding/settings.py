"""Settings the embedding engine shares with every caller: service, CLI and batch path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segue.config import env_float, env_int, env_str
from segue.embedding.stream_state import StreamSettings

# The repository's shipped stream model (an editable install or a checkout).
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "segue_stream.onnx"
PROVIDERS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EngineSettings:
    """Which model runs where, and how a song is cut into segments.

    Environment:
        SEGUE_MODEL_PATH: the stream ONNX model (default models/segue_stream.onnx).
        SEGUE_EXECUTION_PROVIDER: auto, cpu or cuda (default auto: CUDA when it really works).
        SEGUE_ORT_THREADS: ONNX Runtime intra-op threads per run (default 1).
        SEGUE_SEGMENT_S: length of the analysis' fixed segments, seconds (default 8).
        SEGUE_MIN_TAIL_S: shortest final partial window that is padded and analysed rather
            than dropped, seconds (default 0.1).
    """

    model_path: Path = DEFAULT_MODEL
    execution_provider: str = "auto"
    ort_threads: int = 1
    segment_s: float = 8.0
    min_tail_s: float = 0.1

    @classmethod
    def from_env(cls) -> EngineSettings:
        settings = cls(
            model_path=Path(env_str("SEGUE_MODEL_PATH", str(DEFAULT_MODEL))),
            execution_provider=env_str("SEGUE_EXECUTION_PROVIDER", "auto").lower(),
            ort_threads=env_int("SEGUE_ORT_THREADS", 1),
            segment_s=env_float("SEGUE_SEGMENT_S", 8.0),
            min_tail_s=env_float("SEGUE_MIN_TAIL_S", 0.1),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.execution_provider not in PROVIDERS:
            raise ValueError("SEGUE_EXECUTION_PROVIDER must be auto, cpu or cuda")
        if self.ort_threads <= 0 or self.segment_s <= 0:
            raise ValueError("SEGUE_ORT_THREADS and SEGUE_SEGMENT_S must be positive")
        if self.min_tail_s < 0:
            raise ValueError("SEGUE_MIN_TAIL_S must be >= 0")

    @property
    def stream(self) -> StreamSettings:
        """How songs are windowed and segmented."""
        return StreamSettings(segment_s=self.segment_s, min_tail_s=self.min_tail_s)


__all__ = ["DEFAULT_MODEL", "EngineSettings"]
