"""In-process decoding of lossless files (WAV, AIFF, FLAC) through FFmpeg's libraries (PyAV).

For these formats the codec costs little, and the ffmpeg process and its pipe are a large share
of decoding. In-process they decode at 1.3-1.4x the pipe's rate, and the samples are the same,
bit for bit (bench/results/decoders_2026-12-07-amd.md). Lossy codecs keep the pipe: there the
codec is the cost, and PyAV was no faster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from segue.audio import DecodeError, check_decoded
from segue.library.wav_header import wav_declared_s

FloatArray = npt.NDArray[np.float32]

# Suffixes decoded in this process; every other file goes through the ffmpeg pipe.
IN_PROCESS_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".aif", ".aiff"})


class AvReader:
    """A file's audio as mono float32 chunks at `sample_rate_hz`, decoded in this process.

    The same interface as segue.audio.PcmReader: `chunks(frames)` raises DecodeError when the
    file holds no audio or (with `check_length`) ends well before the duration it declares.
    Opening raises DecodeError when FFmpeg's libraries cannot read the file at all.
    """

    def __init__(self, path: str | Path, sample_rate_hz: int, *,
                 check_length: bool = False) -> None:
        import av  # imported here: only lossless files need it

        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self.check_length = check_length
        try:
            self._container: Any = av.open(str(self.path))
        except av.FFmpegError as e:
            raise DecodeError(f"could not open {self.path} in-process: {e}") from e
        audio = self._container.streams.audio
        # A file named .flac that is not one can still "open" as FLAC with no sample rate.
        if not audio or audio[0].sample_rate <= 0 or audio[0].codec_context.channels <= 0:
            self._container.close()
            raise DecodeError(f"{self.path} holds no audio stream FFmpeg's libraries can read")
        self._stream = audio[0]
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)

    def __enter__(self) -> AvReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _decoded(self) -> Iterator[FloatArray]:
        """Resampled mono blocks as FFmpeg hands them out; a damaged packet ends the audio
        (the length check then tells a cut file apart)."""
        import av

        try:
            for frame in self._container.decode(self._stream):
                for out in self._resampler.resample(frame):
                    yield np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
        except av.FFmpegError:
            pass
        for out in self._resampler.resample(None):
            yield np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)

    def chunks(self, frames: int) -> Iterator[FloatArray]:
        """Chunks of `frames` frames; the last may be shorter."""
        pending: list[FloatArray] = []
        held = total = 0
        for block in self._decoded():
            pending.append(block)
            held += block.size
            total += block.size
            while held >= frames:
                joined = np.concatenate(pending)
                yield joined[:frames]
                rest = joined[frames:]
                pending, held = [rest], rest.size
        if held:
            yield np.concatenate(pending)
        check_decoded(self.path, total / self.sample_rate_hz,
                      self._declared_s() if self.check_length else None)

    def _declared_s(self) -> float | None:
        """The duration the file declares: a WAV's own header (FFmpeg's figure for a cut WAV
        comes from its size), else FFmpeg's (FLAC's and AIFF's headers hold the frame count)."""
        if self._container.format.name == "wav" and (header := wav_declared_s(self.path)):
            return header
        duration = self._container.duration  # microseconds
        return None if duration is None else float(duration) / 1e6

    def close(self) -> None:
        self._container.close()


__all__ = ["IN_PROCESS_SUFFIXES", "AvReader"]
