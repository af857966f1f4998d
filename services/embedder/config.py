"""Settings of the embedder service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segue.config import env_float, env_int, env_str
from segue.embedding.settings import DEFAULT_MODEL, EngineSettings

# Publicly known, so tokens signed with it are forgeable: only for development.
DEV_TOKEN_KEY = "segue-dev-token-key-do-not-use-in-production"


@dataclass(frozen=True)
class EmbedderConfig:
    """Embedder settings, read once at start-up.

    Environment:
        SEGUE_MODEL_PATH: the stream ONNX model (default models/segue_stream.onnx).
        SEGUE_EXECUTION_PROVIDER: auto, cpu or cuda (default auto: CUDA when it really works).
        SEGUE_ORT_THREADS: ONNX Runtime intra-op threads per run (default 1).
        SEGUE_BATCH_WORKERS: model runs in flight at once (default 1).
        SEGUE_BATCH_MAX_SIZE: most windows in one model run (default 64).
        SEGUE_BATCH_MAX_DELAY_MS: longest a free worker holds a batch for requests that are
            expected but not yet queued (default 2; see batcher.py: streams' next windows are
            queued ahead, so a free worker rarely waits).
        SEGUE_MAX_CONCURRENT_STREAMS: Analyze streams served at once (default 256).
        SEGUE_MAX_SONG_S: longest song accepted, seconds (default 1800).
        SEGUE_MAX_CLIP_S: longest EmbedClip clip, seconds (default 60).
        SEGUE_MAX_CHUNK_BYTES: largest AudioChunk.pcm (default 1 MiB).
        SEGUE_CHECKPOINT_INTERVAL_S: audio seconds between checkpoints by default (default 5).
        SEGUE_SEGMENT_S: length of the analysis' fixed segments, seconds (default 8).
        SEGUE_MIN_TAIL_S: shortest final partial window that is padded and analysed rather
            than dropped, seconds (default 0.1).
        SEGUE_STREAM_IDLE_TTL_S: a stream that sends nothing for this long is closed
            (default 60).
        SEGUE_TOKEN_KEY: HMAC key signing resume tokens; share it between replicas
            (default: a public development key, with a warning at start-up).
    """

    model_path: Path = DEFAULT_MODEL
    execution_provider: str = "auto"
    ort_threads: int = 1
    batch_workers: int = 1
    batch_max_size: int = 64
    batch_max_delay_ms: float = 2.0
    max_concurrent_streams: int = 256
    max_song_s: float = 1800.0
    max_clip_s: float = 60.0
    max_chunk_bytes: int = 1024 * 1024
    checkpoint_interval_s: float = 5.0
    segment_s: float = 8.0
    min_tail_s: float = 0.1
    stream_idle_ttl_s: float = 60.0
    token_key: str = DEV_TOKEN_KEY

    @property
    def uses_dev_token_key(self) -> bool:
        return self.token_key == DEV_TOKEN_KEY

    @property
    def engine(self) -> EngineSettings:
        """The settings the embedding engine shares with the CLI and the batch path."""
        return EngineSettings(
            model_path=self.model_path,
            execution_provider=self.execution_provider,
            ort_threads=self.ort_threads,
            segment_s=self.segment_s,
            min_tail_s=self.min_tail_s,
        )

    @classmethod
    def from_env(cls) -> EmbedderConfig:
        engine = EngineSettings.from_env()
        config = cls(
            model_path=engine.model_path,
            execution_provider=engine.execution_provider,
            ort_threads=engine.ort_threads,
            batch_workers=env_int("SEGUE_BATCH_WORKERS", 1),
            batch_max_size=env_int("SEGUE_BATCH_MAX_SIZE", 64),
            batch_max_delay_ms=env_float("SEGUE_BATCH_MAX_DELAY_MS", 2.0),
            max_concurrent_streams=env_int("SEGUE_MAX_CONCURRENT_STREAMS", 256),
            max_song_s=env_float("SEGUE_MAX_SONG_S", 1800.0),
            max_clip_s=env_float("SEGUE_MAX_CLIP_S", 60.0),
            max_chunk_bytes=env_int("SEGUE_MAX_CHUNK_BYTES", 1024 * 1024),
            checkpoint_interval_s=env_float("SEGUE_CHECKPOINT_INTERVAL_S", 5.0),
            segment_s=engine.segment_s,
            min_tail_s=engine.min_tail_s,
            stream_idle_ttl_s=env_float("SEGUE_STREAM_IDLE_TTL_S", 60.0),
            token_key=env_str("SEGUE_TOKEN_KEY", DEV_TOKEN_KEY),
        )
        config.validate()
        return config

    def validate(self) -> None:
        self.engine.validate()
        positive = {
            "SEGUE_BATCH_WORKERS": self.batch_workers,
            "SEGUE_BATCH_MAX_SIZE": self.batch_max_size,
            "SEGUE_MAX_CONCURRENT_STREAMS": self.max_concurrent_streams,
            "SEGUE_MAX_SONG_S": self.max_song_s,
            "SEGUE_MAX_CLIP_S": self.max_clip_s,
            "SEGUE_MAX_CHUNK_BYTES": self.max_chunk_bytes,
            "SEGUE_CHECKPOINT_INTERVAL_S": self.checkpoint_interval_s,
            "SEGUE_STREAM_IDLE_TTL_S": self.stream_idle_ttl_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.batch_max_delay_ms < 0:
            raise ValueError("SEGUE_BATCH_MAX_DELAY_MS must be >= 0")


__all__ = ["DEV_TOKEN_KEY", "EmbedderConfig"]
