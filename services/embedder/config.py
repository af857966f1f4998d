"""Settings of the embedder service."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from segue.config import env_bool, env_float, env_int, env_str
from segue.embedding.settings import DEFAULT_MODEL, EngineSettings

# Publicly known, so tokens sealed with it are forgeable and readable: only for development.
DEV_TOKEN_KEY = "segue-dev-token-key-do-not-use-in-production"
# The shortest checkpoint interval a stream may ask for, seconds of audio: each checkpoint
# carries the stream's whole state, so shorter intervals multiply the response bytes.
MIN_CHECKPOINT_INTERVAL_S = 1.0
# Largest magnitude a float (F32LE) PCM sample may have; full scale is 1.0, and the headroom
# covers hot masters and unnormalised mixes. Larger values are refused: they overflow the
# float32 squares of the loudness and structure features.
MAX_ABS_SAMPLE = 64.0


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
        SEGUE_CHECKPOINT_INTERVAL_S: audio seconds between checkpoints by default (default 5;
            at least MIN_CHECKPOINT_INTERVAL_S, 1 s, which also bounds what a stream may ask
            for in StreamConfig.checkpoint_interval_s).
        SEGUE_CHECKPOINT_BYTES_PER_S: resume-token bytes a stream may be sent per second of
            its audio (default 32768). Each checkpoint carries the stream's whole state, which
            grows with the song (about 0.7 kB per second of audio, plus up to 88 kB of
            resampled audio for formats not at 22050 Hz), so at a fixed interval a stream's
            token bytes grow with the square of its length. A checkpoint therefore comes no
            sooner than its predecessor's size allows under this budget: at 22050 Hz songs up
            to about 4 minutes keep 5 s checkpoints (at 44.1 kHz about 2 minutes), a 30-minute
            stream gets one about every 35-40 s (bench/bench_checkpoints.py).
            0 turns the budget off (checkpoints at the interval only).
        SEGUE_SEGMENT_S: length of the analysis' fixed segments, seconds (default 8).
        SEGUE_MIN_TAIL_S: shortest final partial window that is padded and analysed rather
            than dropped, seconds (default 0.1).
        SEGUE_STREAM_IDLE_TTL_S: a stream that sends nothing for this long is closed with
            DEADLINE_EXCEEDED (default 60).
        SEGUE_STREAM_WRITE_TIMEOUT_S: a stream whose client accepts no response for this
            long (it stopped reading, so gRPC flow control holds the server's writes) is
            closed with DEADLINE_EXCEEDED, freeing its slot and buffers (default 30).
        SEGUE_MIN_AUDIO_RATE: seconds of audio a stream must deliver per second the server
            spends waiting for its messages, averaged over the stream's life; a stream below
            it is closed with RESOURCE_EXHAUSTED, so trickling clients cannot hold stream
            slots (default 0.5, half real time: a client streaming at 1x passes with room,
            and may pause for as long as it has streamed; 0 turns the rule off). Time the
            server spends on the stream's audio is not counted against the client.
        SEGUE_MIN_AUDIO_RATE_GRACE_S: waiting time before SEGUE_MIN_AUDIO_RATE applies
            (default 10).
        SEGUE_TOKEN_KEY: secret from which the resume tokens' encryption key is derived;
            share it between replicas (default: a public development key, which
            `python -m services.embedder` refuses unless SEGUE_INSECURE_DEV is set).
        SEGUE_TOKEN_TTL_S: how long a resume token stays valid after it was issued, seconds
            (default 86400, one day; 0: tokens never expire).
        SEGUE_TOKEN_ACCEPT_LEGACY: also accept the signed but unencrypted, never-expiring
            tokens of format versions 1 and 2 (default false; set it only for the time a
            rolling upgrade needs, see resume_token.py).
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
    checkpoint_bytes_per_s: float = 32768.0
    segment_s: float = 8.0
    min_tail_s: float = 0.1
    stream_idle_ttl_s: float = 60.0
    stream_write_timeout_s: float = 30.0
    min_audio_rate: float = 0.5
    min_audio_rate_grace_s: float = 10.0
    token_key: str = DEV_TOKEN_KEY
    token_ttl_s: float = 86400.0
    token_accept_legacy: bool = False

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
            checkpoint_bytes_per_s=env_float("SEGUE_CHECKPOINT_BYTES_PER_S", 32768.0),
            segment_s=engine.segment_s,
            min_tail_s=engine.min_tail_s,
            stream_idle_ttl_s=env_float("SEGUE_STREAM_IDLE_TTL_S", 60.0),
            stream_write_timeout_s=env_float("SEGUE_STREAM_WRITE_TIMEOUT_S", 30.0),
            min_audio_rate=env_float("SEGUE_MIN_AUDIO_RATE", 0.5),
            min_audio_rate_grace_s=env_float("SEGUE_MIN_AUDIO_RATE_GRACE_S", 10.0),
            token_key=env_str("SEGUE_TOKEN_KEY", DEV_TOKEN_KEY),
            token_ttl_s=env_float("SEGUE_TOKEN_TTL_S", 86400.0),
            token_accept_legacy=env_bool("SEGUE_TOKEN_ACCEPT_LEGACY", False),
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
            "SEGUE_STREAM_WRITE_TIMEOUT_S": self.stream_write_timeout_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        at_least_zero = {
            "SEGUE_BATCH_MAX_DELAY_MS": self.batch_max_delay_ms,
            "SEGUE_MIN_AUDIO_RATE": self.min_audio_rate,
            "SEGUE_CHECKPOINT_BYTES_PER_S": self.checkpoint_bytes_per_s,
            "SEGUE_MIN_AUDIO_RATE_GRACE_S": self.min_audio_rate_grace_s,
            "SEGUE_TOKEN_TTL_S": self.token_ttl_s,
        }
        for name, value in at_least_zero.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")
        if self.checkpoint_interval_s < MIN_CHECKPOINT_INTERVAL_S:
            raise ValueError(f"SEGUE_CHECKPOINT_INTERVAL_S must be at least "
                             f"{MIN_CHECKPOINT_INTERVAL_S:g} s, got {self.checkpoint_interval_s}")
        if not self.token_key:
            raise ValueError("SEGUE_TOKEN_KEY must not be empty")


__all__ = ["DEV_TOKEN_KEY", "MAX_ABS_SAMPLE", "MIN_CHECKPOINT_INTERVAL_S", "EmbedderConfig"]
