"""Settings of the mixer service."""

from __future__ import annotations

import math
from dataclasses import dataclass

from segue.config import env_float, env_int, env_str

DEFAULT_GRPC_PORT = 50053
DEFAULT_METRICS_PORT = 9103


@dataclass(frozen=True)
class MixerConfig:
    """Mixer-specific settings.

    Environment:
        SEGUE_MIXER_MAX_EXCERPT_BYTES: largest excerpt (or mix song) accepted, each
            (default 256 MiB).
        SEGUE_MIXER_MAX_EXCERPT_S: longest excerpt (or mix song) accepted after decoding
            (default 900 s).
        SEGUE_MIXER_MAX_MIX_SONGS: most songs in one RenderMix (default 200).
        SEGUE_MIXER_MAX_MIX_BYTES: most audio bytes one RenderMix may send, all songs together
            (default 1 GiB).
        SEGUE_MIXER_MAX_MIX_S: most seconds of audio one RenderMix may send once decoded, all
            songs together (default 7200 s: about 2.5 GB of decoded audio at 44.1 kHz).
        SEGUE_MIXER_MAX_CONCURRENT: renders run at once (default 2); up to 8x as many wait in
            line, and only more than that get RESOURCE_EXHAUSTED.
        SEGUE_MIXER_WORKERS: threads that render (default 2; renders are CPU bound).
        SEGUE_MIXER_OUTPUT_CHUNK_BYTES: size of the streamed audio chunks (default 256 KiB).
        SEGUE_MIXER_TRUE_PEAK_CEILING_DBTP: limiter ceiling (default -1.0 dBTP).
        SEGUE_MIXER_MAX_STRETCH: largest tempo change of the incoming song (default 0.12).
        SEGUE_MIXER_MATCHER_ADDR: the matcher (host:port or any gRPC target) that gives the
            stored analyses of songs sent by id (default empty: none; a song id without an
            analysis is then FAILED_PRECONDITION).
        SEGUE_MIXER_MATCHER_TIMEOUT_S: deadline of each GetSong call to the matcher
            (default 10 s).
    """

    max_excerpt_bytes: int = 256 * 1024 * 1024
    max_excerpt_s: float = 900.0
    max_mix_songs: int = 200
    max_mix_bytes: int = 1024 * 1024 * 1024
    max_mix_s: float = 7200.0
    max_concurrent: int = 2
    workers: int = 2
    output_chunk_bytes: int = 256 * 1024
    true_peak_ceiling_dbtp: float = -1.0
    max_stretch: float = 0.12
    matcher_addr: str = ""
    matcher_timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> MixerConfig:
        config = cls(
            max_excerpt_bytes=env_int("SEGUE_MIXER_MAX_EXCERPT_BYTES", cls.max_excerpt_bytes),
            max_excerpt_s=env_float("SEGUE_MIXER_MAX_EXCERPT_S", cls.max_excerpt_s),
            max_mix_songs=env_int("SEGUE_MIXER_MAX_MIX_SONGS", cls.max_mix_songs),
            max_mix_bytes=env_int("SEGUE_MIXER_MAX_MIX_BYTES", cls.max_mix_bytes),
            max_mix_s=env_float("SEGUE_MIXER_MAX_MIX_S", cls.max_mix_s),
            max_concurrent=env_int("SEGUE_MIXER_MAX_CONCURRENT", cls.max_concurrent),
            workers=env_int("SEGUE_MIXER_WORKERS", cls.workers),
            output_chunk_bytes=env_int("SEGUE_MIXER_OUTPUT_CHUNK_BYTES", cls.output_chunk_bytes),
            true_peak_ceiling_dbtp=env_float(
                "SEGUE_MIXER_TRUE_PEAK_CEILING_DBTP", cls.true_peak_ceiling_dbtp
            ),
            max_stretch=env_float("SEGUE_MIXER_MAX_STRETCH", cls.max_stretch),
            matcher_addr=env_str("SEGUE_MIXER_MATCHER_ADDR", cls.matcher_addr).strip(),
            matcher_timeout_s=env_float("SEGUE_MIXER_MATCHER_TIMEOUT_S", cls.matcher_timeout_s),
        )
        if config.max_concurrent < 1 or config.workers < 1 or config.output_chunk_bytes < 1024:
            raise ValueError("SEGUE_MIXER_MAX_CONCURRENT/WORKERS must be >= 1, chunks >= 1 KiB")
        if not 0.0 < config.max_stretch <= 0.5:
            raise ValueError("SEGUE_MIXER_MAX_STRETCH must be in (0, 0.5]")
        if config.true_peak_ceiling_dbtp >= 0.0:
            raise ValueError("SEGUE_MIXER_TRUE_PEAK_CEILING_DBTP must be below 0 dBTP")
        if config.max_mix_songs < 2 or config.max_mix_bytes < 1 or config.max_mix_s <= 0.0:
            raise ValueError(
                "SEGUE_MIXER_MAX_MIX_SONGS must be >= 2, MAX_MIX_BYTES and MAX_MIX_S above 0"
            )
        if not (math.isfinite(config.matcher_timeout_s) and config.matcher_timeout_s > 0.0):
            raise ValueError("SEGUE_MIXER_MATCHER_TIMEOUT_S must be above 0")
        return config
