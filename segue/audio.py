"""Audio I/O: decoding anything ffmpeg reads, and raw PCM conversions.

ffmpeg runs as a subprocess: it reads every container and codec a user may have, and its
resampler (soxr when built in, else swr) is the reference the project's decoders compare to.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segue.v1 import common_pb2

FloatArray = npt.NDArray[np.float32]

BYTES_PER_SAMPLE = {
    common_pb2.SAMPLE_FORMAT_S16LE: 2,
    common_pb2.SAMPLE_FORMAT_F32LE: 4,
}
SUPPORTED_RATES_HZ = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
MAX_CHANNELS = 8


class DecodeError(ValueError):
    """The bytes or file could not be decoded as audio."""


def ffmpeg_path() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def _run_ffmpeg(args: list[str], stdin: bytes | None, what: str) -> bytes:
    proc = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
        input=stdin,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DecodeError(f"ffmpeg could not decode {what}: {detail[-1] if detail else 'error'}")
    return proc.stdout


def decode(
    source: str | Path | bytes, sample_rate_hz: int, channels: int = 1
) -> FloatArray:
    """Decodes a file path or encoded bytes to float32 PCM, shape [frames, channels].

    Mono output (channels=1) is returned as shape [frames].
    """
    if isinstance(source, bytes):
        if not source:
            raise DecodeError("no audio bytes")
        args, stdin, what = ["-i", "pipe:0"], source, "the audio bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise DecodeError(f"no such file: {path}")
        args, stdin, what = ["-i", str(path)], None, str(path)
    raw = _run_ffmpeg(
        [*args, "-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels),
         "-ar", str(sample_rate_hz), "pipe:1"],
        stdin,
        what,
    )
    audio = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if audio.size == 0:
        raise DecodeError(f"{what} holds no audio")
    if channels == 1:
        return audio
    return audio.reshape(-1, channels)


def encode(audio: FloatArray, sample_rate_hz: int, fmt: str) -> bytes:
    """Encodes float32 PCM ([frames] or [frames, channels]) as wav, flac, mp3 or ogg."""
    codecs = {
        "wav": ["-f", "wav", "-acodec", "pcm_s16le"],
        "flac": ["-f", "flac"],
        "mp3": ["-f", "mp3", "-b:a", "192k"],
        "ogg": ["-f", "ogg", "-acodec", "libvorbis", "-q:a", "5"],
    }
    if fmt not in codecs:
        raise ValueError(f"unknown output format {fmt!r}; use one of {sorted(codecs)}")
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    return _run_ffmpeg(
        ["-f", "f32le", "-ar", str(sample_rate_hz), "-ac", str(channels), "-i", "pipe:0",
         *codecs[fmt], "pipe:1"],
        np.ascontiguousarray(audio, dtype="<f4").tobytes(),
        f"{fmt} output",
    )


def frame_bytes(fmt: common_pb2.AudioFormat) -> int:
    """Bytes per frame (one sample of every channel)."""
    return BYTES_PER_SAMPLE[fmt.sample_format] * fmt.channels


def validate_format(fmt: common_pb2.AudioFormat) -> None:
    """Raises ValueError naming what is unsupported in a client's audio format."""
    if fmt.sample_format not in BYTES_PER_SAMPLE:
        raise ValueError(
            f"unsupported sample_format {fmt.sample_format}; use SAMPLE_FORMAT_S16LE or "
            "SAMPLE_FORMAT_F32LE"
        )
    if fmt.sample_rate_hz not in SUPPORTED_RATES_HZ:
        raise ValueError(
            f"unsupported sample_rate_hz {fmt.sample_rate_hz}; supported: "
            f"{', '.join(map(str, SUPPORTED_RATES_HZ))}"
        )
    if not 1 <= fmt.channels <= MAX_CHANNELS:
        raise ValueError(f"unsupported channels {fmt.channels}; use 1 to {MAX_CHANNELS}")


def pcm_to_frames(pcm: bytes, fmt: common_pb2.AudioFormat) -> FloatArray:
    """Raw interleaved PCM to float32 [frames, channels]; ValueError on partial frames or
    NaN/Inf samples, with a message that says which."""
    size = frame_bytes(fmt)
    if len(pcm) % size:
        raise ValueError(
            f"{len(pcm)} bytes is not a whole number of {size}-byte frames "
            f"({fmt.channels} channel(s) of {BYTES_PER_SAMPLE[fmt.sample_format]} bytes)"
        )
    if fmt.sample_format == common_pb2.SAMPLE_FORMAT_S16LE:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    else:
        samples = np.frombuffer(pcm, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            bad = int(np.flatnonzero(~np.isfinite(samples))[0]) // fmt.channels
            raise ValueError(f"NaN or Inf samples (first at frame {bad})")
    frames: FloatArray = samples.reshape(-1, fmt.channels)
    return frames


def pcm_to_mono(pcm: bytes, fmt: common_pb2.AudioFormat) -> FloatArray:
    """Raw interleaved PCM to mono float32; ValueError on partial frames or NaN/Inf."""
    try:
        frames = pcm_to_frames(pcm, fmt)
    except ValueError as e:
        detail = str(e)
        raise ValueError(
            f"chunk of {detail}" if "bytes is not" in detail else f"chunk holds {detail}"
        ) from None
    if fmt.channels == 1:
        return frames[:, 0]
    mono: FloatArray = frames.mean(axis=1, dtype=np.float32)
    return mono


def mono_to_pcm(audio: FloatArray, sample_format: int) -> bytes:
    """Mono float32 to raw PCM bytes in the given format (s16le is clipped to range)."""
    if sample_format == common_pb2.SAMPLE_FORMAT_S16LE:
        ints = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
        return ints.tobytes()
    if sample_format == common_pb2.SAMPLE_FORMAT_F32LE:
        return np.ascontiguousarray(audio, dtype="<f4").tobytes()
    raise ValueError(f"unsupported sample_format {sample_format}")
