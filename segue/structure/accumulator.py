"""Streaming feature extraction for structure analysis, with a compact resumable state."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.fft

from segue.structure.chroma import ChromaExtractor
from segue.structure.features import StructureFeatures
from segue.structure.onset import N_MELS, LogMel, low_band_count, spectral_flux
from segue.structure.result import StructureResult

F32 = npt.NDArray[np.float32]

TIMBRE_COEFFS = 13
# Timbre summaries per pushed window (each covers the mel frames of one half).
TIMBRE_PER_WINDOW = 2
# Share of the model's mel bands treated as bass bands when its frequency range is unknown.
MODEL_LOW_BAND_SHARE = 0.08
MAX_WINDOW_S = 4.0

_MAGIC = b"SGST"
_VERSION = 1
_HEADER = struct.Struct("<4sHI")

Source = Literal["pcm", "mel"]


class StructureAccumulator:
    """Features for structure analysis, accumulated window by window.

    Each push analyses only that window plus a little carried state (the previous log-mel
    frame and, when computing log-mel itself, the PCM that straddles a frame), so features
    do not depend on how the song was cut into windows beyond those carried values. Stored
    features are float16 from the start, so a state restored by from_bytes continues
    exactly as the original would.
    """

    def __init__(self, sample_rate_hz: int = 22050) -> None:
        if not 4000 <= sample_rate_hz <= 192000:
            raise ValueError(f"unsupported sample rate {sample_rate_hz}")
        self.sample_rate_hz = sample_rate_hz
        self._chroma = ChromaExtractor(sample_rate_hz)
        self._log_mel = LogMel(sample_rate_hz)
        self._own_low_bands = low_band_count(N_MELS, min(8000.0, sample_rate_hz / 2))
        self._source: Source | None = None
        self._window_lengths: list[int] = []
        self._mel_counts: list[int] = []
        self._onset_full: list[npt.NDArray[np.float16]] = []
        self._onset_low: list[npt.NDArray[np.float16]] = []
        self._chroma_frames: list[npt.NDArray[np.float16]] = []
        self._levels: list[npt.NDArray[np.float16]] = []
        self._timbre: list[npt.NDArray[np.float16]] = []
        self._previous_mel: F32 | None = None
        self._tail = np.zeros(0, np.float32)
        self._next_frame = 0

    @property
    def duration_s(self) -> float:
        return sum(self._window_lengths) / self.sample_rate_hz

    @property
    def windows_pushed(self) -> int:
        return len(self._window_lengths)

    def push(self, window_pcm: npt.ArrayLike, mel_frames: npt.ArrayLike | None = None) -> None:
        """Adds one window of mono PCM and, optionally, the model's log-mel frames of it.

        With `mel_frames` ([frames, n_mels], natural or any other log scale, frames spread
        evenly over the window) onsets come from them; without, from an own cheap log-mel.
        A stream must use one or the other throughout.
        """
        pcm = np.asarray(window_pcm, dtype=np.float32).reshape(-1)
        if len(pcm) == 0:
            raise ValueError("empty window")
        if len(pcm) > MAX_WINDOW_S * self.sample_rate_hz:
            raise ValueError(f"window of {len(pcm)} samples exceeds {MAX_WINDOW_S} s")
        if not np.all(np.isfinite(pcm)):
            raise ValueError("window contains NaN or Inf samples")
        source: Source = "pcm" if mel_frames is None else "mel"
        if self._source is not None and source != self._source:
            raise ValueError("a stream must always or never pass mel_frames")
        if source == "mel":
            mel = np.asarray(mel_frames, dtype=np.float32)
            if mel.ndim != 2 or mel.shape[0] == 0 or mel.shape[1] == 0:
                raise ValueError(f"mel_frames must be [frames, n_mels], got shape {mel.shape}")
            if self._previous_mel is not None and mel.shape[1] != len(self._previous_mel):
                raise ValueError("n_mels changed within the stream")
            if not np.all(np.isfinite(mel)):
                raise ValueError("mel_frames contain NaN or Inf")
            n_low = max(1, round(mel.shape[1] * MODEL_LOW_BAND_SHARE))
        else:
            start = sum(self._window_lengths)
            mel, self._tail, self._next_frame = self._log_mel.frames(
                self._tail, pcm, self._next_frame, start
            )
            n_low = self._own_low_bands
        self._source = source
        full, low = spectral_flux(mel, self._previous_mel, n_low)
        if len(mel):
            self._previous_mel = mel[-1].copy()
        chroma, level_db = self._chroma(pcm)
        self._window_lengths.append(len(pcm))
        self._mel_counts.append(len(mel))
        self._onset_full.append(full.astype(np.float16))
        self._onset_low.append(low.astype(np.float16))
        self._chroma_frames.append(chroma.astype(np.float16))
        self._levels.append(level_db.astype(np.float16))
        self._timbre.append(_timbre(mel).astype(np.float16))

    def features(self) -> StructureFeatures:
        """The accumulated features with their times."""
        sr = self.sample_rate_hz
        lengths = np.asarray(self._window_lengths, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
        if self._source == "mel":
            onset_times = np.concatenate(
                [
                    (s + (np.arange(c) + 0.5) * n / c) / sr
                    for s, n, c in zip(starts, lengths, self._mel_counts, strict=True)
                ]
            )
        else:
            total = int(sum(self._mel_counts))
            onset_times = np.arange(total) * self._log_mel.hop / sr
        chroma_times = np.concatenate(
            [
                (s + (np.arange(c) + 0.5) * n / c) / sr
                for s, n, c in zip(
                    starts, lengths, (len(c) for c in self._chroma_frames), strict=True
                )
            ]
            or [np.zeros(0)]
        )
        timbre_times = np.concatenate(
            [
                (s + (np.arange(TIMBRE_PER_WINDOW) + 0.5) * n / TIMBRE_PER_WINDOW) / sr
                for s, n in zip(starts, lengths, strict=True)
            ]
            or [np.zeros(0)]
        )

        def cat(parts: list[npt.NDArray[np.float16]], width: int = 0) -> F32:
            if not parts:
                return np.zeros((0, width) if width else 0, np.float32)
            return np.concatenate(parts).astype(np.float32)

        return StructureFeatures(
            sample_rate_hz=sr,
            duration_s=float(lengths.sum()) / sr,
            onset_times_s=np.asarray(onset_times, dtype=np.float64),
            onset_full=cat(self._onset_full),
            onset_low=cat(self._onset_low),
            chroma_times_s=np.asarray(chroma_times, dtype=np.float64),
            chroma=cat(self._chroma_frames, 12),
            level_db=cat(self._levels),
            timbre_times_s=np.asarray(timbre_times, dtype=np.float64),
            timbre=cat(self._timbre, TIMBRE_COEFFS),
        )

    def analyze(self) -> StructureResult:
        """Final analysis of everything pushed so far (the state is not changed)."""
        from segue.structure.analysis import analyze_features

        return analyze_features(self.features())

    def to_bytes(self) -> bytes:
        """Versioned, checksummed, compressed state (a few hundred bytes per second of audio)."""
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "meta": np.asarray(
                [
                    self.sample_rate_hz,
                    {None: 0, "pcm": 1, "mel": 2}[self._source],
                    self._next_frame,
                ],
                dtype=np.int64,
            ),
            "window_lengths": np.asarray(self._window_lengths, dtype=np.int32),
            "mel_counts": np.asarray(self._mel_counts, dtype=np.int32),
            "chroma_counts": np.asarray([len(c) for c in self._chroma_frames], dtype=np.int32),
            "onset_full": _cat16(self._onset_full, 0),
            "onset_low": _cat16(self._onset_low, 0),
            "chroma": _cat16(self._chroma_frames, 12),
            "levels": _cat16(self._levels, 0),
            "timbre": _cat16(self._timbre, TIMBRE_COEFFS),
            "previous_mel": (
                np.zeros(0, np.float32) if self._previous_mel is None else self._previous_mel
            ),
            "tail": self._tail,
        }
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        payload = zlib.compress(buffer.getvalue(), 6)
        return _HEADER.pack(_MAGIC, _VERSION, zlib.crc32(payload)) + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> StructureAccumulator:
        """Restores a state written by to_bytes; ValueError when corrupt or of another version."""
        if len(data) < _HEADER.size:
            raise ValueError("structure state too short")
        magic, version, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a structure state")
        if version != _VERSION:
            raise ValueError(f"unsupported structure state version {version}")
        payload = data[_HEADER.size :]
        if zlib.crc32(payload) != crc:
            raise ValueError("structure state checksum mismatch")
        try:
            with np.load(io.BytesIO(zlib.decompress(payload)), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            return cls._restore(arrays)
        except ValueError:
            raise
        except Exception as error:  # any decoding failure means a corrupt state
            raise ValueError(f"corrupt structure state: {error}") from error

    @classmethod
    def _restore(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> StructureAccumulator:
        sample_rate, source_code, next_frame = (int(v) for v in arrays["meta"])
        state = cls(sample_rate)
        state._source = {0: None, 1: "pcm", 2: "mel"}[source_code]
        state._next_frame = next_frame
        lengths = [int(v) for v in arrays["window_lengths"]]
        mel_counts = [int(v) for v in arrays["mel_counts"]]
        chroma_counts = [int(v) for v in arrays["chroma_counts"]]
        if not len(lengths) == len(mel_counts) == len(chroma_counts):
            raise ValueError("inconsistent window counts")
        state._window_lengths = lengths
        state._mel_counts = mel_counts
        state._onset_full = _split(arrays["onset_full"], mel_counts)
        state._onset_low = _split(arrays["onset_low"], mel_counts)
        state._chroma_frames = _split(arrays["chroma"], chroma_counts)
        state._levels = _split(arrays["levels"], chroma_counts)
        state._timbre = _split(arrays["timbre"], [TIMBRE_PER_WINDOW] * len(lengths))
        previous = np.asarray(arrays["previous_mel"], dtype=np.float32)
        state._previous_mel = previous if len(previous) else None
        state._tail = np.asarray(arrays["tail"], dtype=np.float32)
        if state._chroma_frames and state._chroma_frames[0].shape[1:] != (12,):
            raise ValueError("chroma has the wrong width")
        return state


def analyze_audio(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureResult:
    """Structure of a whole mono song, computed exactly as a stream of 1 s windows would be."""
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    state = StructureAccumulator(sample_rate_hz)
    for start in range(0, len(audio), sample_rate_hz):
        state.push(audio[start : start + sample_rate_hz])
    return state.analyze()


def _timbre(log_mel: F32) -> F32:
    """Cepstral summary of each half of a window's log-mel frames, [TIMBRE_PER_WINDOW, 13]."""
    out = np.zeros((TIMBRE_PER_WINDOW, TIMBRE_COEFFS), np.float32)
    if len(log_mel) == 0:
        return out
    for i, part in enumerate(np.array_split(log_mel, TIMBRE_PER_WINDOW)):
        if len(part) == 0:
            part = log_mel
        cepstrum = scipy.fft.dct(part.mean(axis=0), type=2, norm="ortho")
        width = min(TIMBRE_COEFFS, len(cepstrum))
        out[i, :width] = cepstrum[:width]
    return out


def _cat16(parts: list[npt.NDArray[np.float16]], width: int) -> npt.NDArray[np.float16]:
    if not parts:
        return np.zeros((0, width) if width else 0, np.float16)
    return np.concatenate(parts)


def _split(values: npt.NDArray[np.generic], counts: list[int]) -> list[npt.NDArray[np.float16]]:
    if sum(counts) != len(values):
        raise ValueError("feature lengths do not match window counts")
    bounds = np.cumsum(counts)[:-1]
    return [np.asarray(p, dtype=np.float16) for p in np.split(values, bounds)] if counts else []
