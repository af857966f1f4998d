"""Decoding a library file: the rate it is decoded at, what is checked before decoding starts,
which reader decodes it, and how a failed decode is named.

Kept apart from the engine so that callers that only stream the audio to a server (the service
path, the CLI) do not import the model and the analysis stack.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from segue.audio import DecodeError, PcmReader
from segue.library import outcome as why
from segue.library.av_reader import IN_PROCESS_SUFFIXES, AvReader
from segue.library.outcome import Failed
from segue.library.sources import Source

# Rate files are decoded at: the model's own, so nothing is resampled twice (Hz).
DECODE_RATE_HZ = 22050


def check_file(source: Source) -> tuple[os.stat_result | None, Failed | None]:
    """The file's stat, or the reason it cannot be read at all (before decoding starts)."""
    path = source.path
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None, Failed(source, why.NOT_A_FILE, "not a regular file")
        if info.st_size == 0:
            return None, Failed(source, why.EMPTY, "zero bytes")
        with path.open("rb"):
            pass  # permission is checked on open, not on stat
    except FileNotFoundError:
        return None, Failed(source, why.VANISHED, "no such file")
    except PermissionError as e:
        return None, Failed(source, why.UNREADABLE, e.strerror or "permission denied")
    except OSError as e:
        return None, Failed(source, why.UNREADABLE, e.strerror or str(e))
    return info, None


def open_reader(path: Path, *, check_length: bool) -> PcmReader | AvReader:
    """The cheaper reader of the file's audio at DECODE_RATE_HZ, mono: in this process for
    lossless formats (the same samples), else ffmpeg's pipe. A lossless file that PyAV cannot
    open goes to the pipe too, which names the failure as it does for any file."""
    if path.suffix.lower() in IN_PROCESS_SUFFIXES:
        try:
            return AvReader(path, DECODE_RATE_HZ, check_length=check_length)
        except DecodeError:
            pass
    return PcmReader(path, DECODE_RATE_HZ, check_length=check_length)


def decode_failure(source: Source, error: DecodeError) -> Failed:
    """Names why decoding failed: the file went away, held no audio, was cut short, or is not
    decodable at all."""
    if not source.path.exists():
        return Failed(source, why.VANISHED, "removed while it was decoded")
    text = str(error)
    reason = (
        why.NO_AUDIO
        if "holds no audio" in text
        else why.TRUNCATED
        if text.startswith("truncated")
        else why.UNDECODABLE
    )
    return Failed(source, reason, str(error))


__all__ = ["DECODE_RATE_HZ", "IN_PROCESS_SUFFIXES", "check_file", "decode_failure", "open_reader"]
