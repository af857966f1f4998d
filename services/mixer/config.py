"""Settings of the mixer service."""

from __future__ import annotations

import math
from dataclasses import dataclass

from segue.config import env_float, env_int, env_str

DEFAULT_GRPC_PORT = 50053
DEFAULT_METRICS_PORT = 9103


@dataclass(frozen=True)
class MixerConfig:
    """Mixer-specific settings, checked when made (ValueError names the setting).

    Environment:
        SEGUE_MIXER_MAX_EXCERPT_BYTES: largest excerpt (or mix song) accepted, each
            (default 192 MiB; >= 1).
        SEGUE_MIXER_MAX_EXCERPT_S: longest excerpt (or mix song) accepted, each (default 600 s;
            above 0). Enforced before the audio takes memory: raw PCM is refused as its bytes
            run past it, encoded audio whose header declares more is refused undecoded, and
            encoded audio is decoded only up to it (headers lie), so an excerpt never holds
            more than this many seconds of decoded audio (about 202 MiB at 44.1 kHz stereo).
        SEGUE_MIXER_MAX_MIX_SONGS: most songs in one RenderMix (default 200; >= 2).
        SEGUE_MIXER_MAX_MIX_BYTES: most audio bytes one RenderMix may send, all songs together
            (default 384 MiB; >= 1).
        SEGUE_MIXER_MAX_MIX_S: most seconds of audio one RenderMix may send once decoded, all
            songs together (default 1500 s; above 0).
        The defaults keep one request under 1 GiB (bench/bench_request_memory.py), so that
        SEGUE_MIXER_MAX_CONCURRENT renders fit the deployment's 3 GiB: a RenderMix costs about
        0.5 MiB per second of mix at 44.1 kHz (1.8 GiB an hour) plus ~0.1 GiB for its
        transitions. Raise them for longer sets together with the memory limit.
        SEGUE_MIXER_MAX_CONCURRENT: renders run at once (default 2; >= 1); up to 8x as many
            wait in line, and only more than that get RESOURCE_EXHAUSTED.
        SEGUE_MIXER_WORKERS: threads that render (default 2; >= 1; renders are CPU bound).
        SEGUE_MIXER_OUTPUT_CHUNK_BYTES: size of the streamed audio chunks (default 256 KiB;
            >= 1 KiB).
        SEGUE_MIXER_TRUE_PEAK_CEILING_DBTP: limiter ceiling (default -1.0 dBTP; below 0).
        SEGUE_MIXER_MAX_STRETCH: largest tempo change of the incoming song (default 0.12; in
            (0, 0.5]).
        SEGUE_MIXER_MATCHER_ADDR: the matcher (host:port or any gRPC target) that gives the
            stored analyses of songs sent by id (default empty: none; a song id without an
            analysis is then FAILED_PRECONDITION).
        SEGUE_MIXER_MATCHER_TIMEOUT_S: deadline of each GetSong call to the matcher
            (default 10 s; above 0).
        SEGUE_MIXER_WRITE_TIMEOUT_S: longest wait for the client to accept one response
            message (default 30 s; above 0). Responses are written one at a time, each
            waiting for HTTP/2 flow control, so a client that stops reading holds at most the
            transport's window beyond the render it asked for; after this long the call ends
            with DEADLINE_EXCEEDED and the render's memory is freed.
        SEGUE_MIXER_MAX_UPLOAD_S: longest a request stream (config to end) may take to arrive
            (default 900 s; above 0); longer ends the call with DEADLINE_EXCEEDED.
        SEGUE_MIXER_MIN_UPLOAD_BYTES_PER_S: slowest average upload accepted once the grace
            period is over (default 16384 bytes/s, the rate of 128 kbit/s audio; 0 turns the
            check off); slower ends the call with DEADLINE_EXCEEDED. A stream must have sent
            this many bytes per second since its start, so one that sends nothing, or dribbles,
            cannot hold its place in the render queue.
        SEGUE_MIXER_UPLOAD_GRACE_S: seconds from a stream's start before its average rate is
            checked (default 30 s; >= 0, at most SEGUE_MIXER_MAX_UPLOAD_S).
    """

    max_excerpt_bytes: int = 192 * 1024 * 1024
    max_excerpt_s: float = 600.0
    max_mix_songs: int = 200
    max_mix_bytes: int = 384 * 1024 * 1024
    max_mix_s: float = 1500.0
    max_concurrent: int = 2
    workers: int = 2
    output_chunk_bytes: int = 256 * 1024
    true_peak_ceiling_dbtp: float = -1.0
    max_stretch: float = 0.12
    matcher_addr: str = ""
    matcher_timeout_s: float = 10.0
    write_timeout_s: float = 30.0
    max_upload_s: float = 900.0
    min_upload_bytes_per_s: float = 16384.0
    upload_grace_s: float = 30.0

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_times()
        if not 0.0 < self.max_stretch <= 0.5:
            raise ValueError("SEGUE_MIXER_MAX_STRETCH must be in (0, 0.5]")
        if not self.true_peak_ceiling_dbtp < 0.0:
            raise ValueError("SEGUE_MIXER_TRUE_PEAK_CEILING_DBTP must be below 0 dBTP")

    def _check_sizes(self) -> None:
        if self.max_concurrent < 1 or self.workers < 1 or self.output_chunk_bytes < 1024:
            raise ValueError("SEGUE_MIXER_MAX_CONCURRENT/WORKERS must be >= 1, chunks >= 1 KiB")
        if self.max_mix_songs < 2 or self.max_mix_bytes < 1 or self.max_excerpt_bytes < 1:
            raise ValueError(
                "SEGUE_MIXER_MAX_MIX_SONGS must be >= 2, MAX_MIX_BYTES and MAX_EXCERPT_BYTES >= 1"
            )

    def _check_times(self) -> None:
        positive = {
            "SEGUE_MIXER_MAX_EXCERPT_S": self.max_excerpt_s,
            "SEGUE_MIXER_MAX_MIX_S": self.max_mix_s,
            "SEGUE_MIXER_MATCHER_TIMEOUT_S": self.matcher_timeout_s,
            "SEGUE_MIXER_WRITE_TIMEOUT_S": self.write_timeout_s,
            "SEGUE_MIXER_MAX_UPLOAD_S": self.max_upload_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a number above 0, got {value}")
        rate = self.min_upload_bytes_per_s
        if not (math.isfinite(rate) and rate >= 0.0):
            raise ValueError(f"SEGUE_MIXER_MIN_UPLOAD_BYTES_PER_S must be >= 0, got {rate}")
        if not 0.0 <= self.upload_grace_s <= self.max_upload_s:
            raise ValueError(
                "SEGUE_MIXER_UPLOAD_GRACE_S must be in [0, SEGUE_MIXER_MAX_UPLOAD_S], got "
                f"{self.upload_grace_s}"
            )

    @classmethod
    def from_env(cls) -> MixerConfig:
        return cls(
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
            write_timeout_s=env_float("SEGUE_MIXER_WRITE_TIMEOUT_S", cls.write_timeout_s),
            max_upload_s=env_float("SEGUE_MIXER_MAX_UPLOAD_S", cls.max_upload_s),
            min_upload_bytes_per_s=env_float(
                "SEGUE_MIXER_MIN_UPLOAD_BYTES_PER_S", cls.min_upload_bytes_per_s
            ),
            upload_grace_s=env_float("SEGUE_MIXER_UPLOAD_GRACE_S", cls.upload_grace_s),
        )
