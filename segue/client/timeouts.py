"""The one deadline policy of every Segue client call.

By default (`timeout_s=DEFAULT_POLICY`, a `TimeoutPolicy()`):

- unary calls (ModelInfo, EmbedClip, every Matcher RPC) get `unary_s`, 30 s;
- streaming calls (Analyze, RenderTransition, RenderMashup) get `stream_base_s` (30 s) plus
  `stream_s_per_audio_s` (0.5 s) per second of audio they carry, so a 30-minute song gets
  930 s. The servers run at 30x real time or more under load (bench/results), so a stream
  slower than 2x real time means a stalled server, not a slow one.
- a stream whose length the client cannot know in advance (an iterator of PCM chunks, an
  excerpt without a size) gets `unknown_length_stream_s`: the longest song the embedder
  accepts by default (1800 s) arriving at real time, plus the base: 1830 s.

`timeout_s` is accepted by each client's constructor (for all its calls) and by each method
(for that call, overriding the client's). Its values mean:

- a `TimeoutPolicy`: deadlines computed as above, from that policy's numbers;
- a number: that deadline in seconds for every call, streaming or not;
- `None`: no deadline at all, explicitly (the call may wait forever on a hung server).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from segue.audio import BYTES_PER_SAMPLE
from segue.v1 import common_pb2

# The embedder's default maximum song length (services/embedder/config.py), in seconds.
EMBEDDER_MAX_SONG_S = 1800.0


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")


@dataclass(frozen=True)
class TimeoutPolicy:
    """Deadlines that scale with the work a call carries; every field is in seconds."""

    unary_s: float = 30.0
    stream_base_s: float = 30.0
    # Seconds allowed per second of audio a stream carries (0.5: the server must keep 2x
    # real time).
    stream_s_per_audio_s: float = 0.5
    unknown_length_stream_s: float = 30.0 + EMBEDDER_MAX_SONG_S

    def __post_init__(self) -> None:
        for name in ("unary_s", "stream_base_s", "unknown_length_stream_s"):
            _check_positive(name, getattr(self, name))
        if not math.isfinite(self.stream_s_per_audio_s) or self.stream_s_per_audio_s < 0:
            raise ValueError(f"stream_s_per_audio_s must be >= 0, got {self.stream_s_per_audio_s}")

    def stream_s(self, audio_s: float | None) -> float:
        """Deadline in s of a stream carrying `audio_s` seconds of audio (None: unknown)."""
        if audio_s is None:
            return self.unknown_length_stream_s
        return self.stream_base_s + self.stream_s_per_audio_s * max(0.0, audio_s)


DEFAULT_POLICY: Final = TimeoutPolicy()


class _UseClientTimeout(enum.Enum):
    TOKEN = "use the client's timeout_s"


# Default of every method's `timeout_s`: whatever the client was constructed with.
USE_CLIENT_TIMEOUT: Final = _UseClientTimeout.TOKEN

Timeout: TypeAlias = TimeoutPolicy | float | None
CallTimeout: TypeAlias = Timeout | Literal[_UseClientTimeout.TOKEN]


def check_timeout(timeout_s: CallTimeout) -> None:
    """Raises ValueError for a number that is not a positive, finite count of seconds."""
    if isinstance(timeout_s, int | float):
        _check_positive("timeout_s", timeout_s)


def unary_deadline(client: Timeout, call: CallTimeout) -> float | None:
    """The deadline in s of a unary call (None: none)."""
    chosen = client if call is USE_CLIENT_TIMEOUT else call
    check_timeout(chosen)
    return chosen.unary_s if isinstance(chosen, TimeoutPolicy) else chosen


def stream_deadline(client: Timeout, call: CallTimeout, audio_s: float | None) -> float | None:
    """The deadline in s of a stream carrying `audio_s` seconds of audio (None: unknown)."""
    chosen = client if call is USE_CLIENT_TIMEOUT else call
    check_timeout(chosen)
    return chosen.stream_s(audio_s) if isinstance(chosen, TimeoutPolicy) else chosen


def pcm_seconds(nbytes: int, audio_format: common_pb2.AudioFormat) -> float | None:
    """Seconds of audio in `nbytes` of raw PCM (None: a format the servers would refuse)."""
    sample_bytes = BYTES_PER_SAMPLE.get(audio_format.sample_format, 0)
    frame_rate_bytes = sample_bytes * audio_format.channels * audio_format.sample_rate_hz
    return nbytes / frame_rate_bytes if frame_rate_bytes > 0 else None


def chunks_seconds(chunks: object, audio_format: common_pb2.AudioFormat) -> float | None:
    """Seconds of audio in a list or tuple of PCM chunks; None for iterators (not known yet)."""
    if not isinstance(chunks, list | tuple):
        return None  # iterating would consume a generator the stream still needs
    sized: Iterable[bytes] = chunks
    return pcm_seconds(sum(len(c) for c in sized), audio_format)


__all__ = [
    "DEFAULT_POLICY",
    "USE_CLIENT_TIMEOUT",
    "CallTimeout",
    "Timeout",
    "TimeoutPolicy",
    "chunks_seconds",
    "pcm_seconds",
    "stream_deadline",
    "unary_deadline",
]
