"""The duration a WAV file's header declares, so that a cut file can be told from a short one.

FFmpeg estimates a WAV's duration from the file's size when the data chunk runs past the end,
so a WAV cut short declares, to FFmpeg, just what it holds. The header's own data chunk size
still says how long it was meant to be.
"""

from __future__ import annotations

import struct
from pathlib import Path

# Bytes read to find the fmt and data chunks: metadata chunks before them are rarely larger.
HEADER_BYTES = 1 << 16
# Data sizes that mean "unknown" (written by a stream that could not seek back): no claim.
UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def wav_declared_s(path: Path) -> float | None:
    """Seconds of audio the RIFF/WAVE header declares; None when it declares none (RF64,
    streaming writers, a damaged or non-WAV header)."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    bytes_per_s: int | None = None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 20 <= len(head):
            bytes_per_s = struct.unpack_from("<I", head, pos + 16)[0]  # byte rate field
        elif chunk == b"data":
            if size in UNKNOWN_SIZES or not bytes_per_s:
                return None
            return float(size / bytes_per_s)
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


__all__ = ["wav_declared_s"]
