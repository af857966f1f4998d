"""Streaming feature extraction for structure analysis, with a compact resumable state."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.fft

from segue.structure.chroma import ChromaExtractor
from segue.structure.features import StructureFeatures
from segue.structure.onset import LogMel, spectral_flux
from segue.structure.result import StructureResult

F32 = npt.NDArray[np.float32]

TIMBRE_COEFFS = 13
# Timbre summaries per pushed window (each covers the mel frames of one half).
TIMBRE_PER_WINDOW = 2
MAX_WINDOW_S = 4.0

_MAGIC = b"SGST"
# 2: onsets on the model's own 490-sample frame grid.
_VERSION = 2
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
        self._source: Source | None = None
        self._window_lengths: list[int] = []
        self._mel_counts: list[int] = []
        # Chunks of one or more windows (sizes in the count lists): flux [frames, 2] (all
        # bands, bass bands); chroma and level [chroma frames, 13]; timbre
        # [TIMBRE_PER_WINDOW per window, TIMBRE_COEFFS].
        self._onset: list[npt.NDArray[np.float16]] = []
        self._tonal: list[npt.NDArray[np.float16]] = []
        self._chroma_counts: list[int] = []
        self._timbre: list[npt.NDArray[np.float16]] = []
        self._previous_mel: F32 | None = None
        # Own log-mel only: samples of a frame that the next push completes.
        self._tail = np.zeros(0, np.float32)

    @property
    def duration_s(self) -> float:
        return sum(self._window_lengths) / self.sample_rate_hz

    @property
    def windows_pushed(self) -> int:
        return len(self._window_lengths)

    def push(self, window_pcm: npt.ArrayLike, mel_frames: npt.ArrayLike | None = None) -> None:
        """Adds one window of mono PCM and, optionally, the model's log-mel frames of it.

        With `mel_frames` ([frames, n_mels], natural log, frames spread evenly over the
        window) onsets come from them; without, from `LogMel`, the same front end in numpy.
        A stream must use one or the other throughout.
        """
        pcm = np.asarray(window_pcm, dtype=np.float32).reshape(1, -1)
        if mel_frames is None:
            self.push_batch(pcm)
            return
        mel = np.asarray(mel_frames, dtype=np.float32)
        if mel.ndim != 2:
            raise ValueError(f"mel_frames must be [frames, n_mels], got shape {mel.shape}")
        self.push_batch(pcm, mel[None])

    def push_batch(
        self, windows_pcm: npt.ArrayLike, mel_frames: npt.ArrayLike | None = None
    ) -> None:
        """Adds windows of equal length at once ([windows, samples], with mel_frames [windows,
        frames, n_mels] or None): the same state as pushing them one by one, for a fraction of
        the per-call cost when the model runs several windows per batch."""
        pcm = np.asarray(windows_pcm, dtype=np.float32)
        if pcm.ndim != 2 or pcm.shape[1] == 0:
            raise ValueError(f"windows must be [windows, samples], got shape {pcm.shape}")
        if pcm.shape[1] > MAX_WINDOW_S * self.sample_rate_hz:
            raise ValueError(f"window of {pcm.shape[1]} samples exceeds {MAX_WINDOW_S} s")
        flat = pcm.reshape(-1)
        # One dot product checks every sample: a NaN or Inf anywhere makes it non-finite.
        if not np.isfinite(np.dot(flat, flat)):
            raise ValueError("window contains NaN or Inf samples")
        source: Source = "pcm" if mel_frames is None else "mel"
        if self._source is not None and source != self._source:
            raise ValueError("a stream must always or never pass mel_frames")
        count, length = pcm.shape
        if mel_frames is None:
            self._source = source
            for window in pcm:
                mel, self._tail = self._log_mel.frames(self._tail, window)
                self._add_onset(mel)
                self._timbre.append(_timbre(mel[None]).astype(np.float16))
                self._mel_counts.append(len(mel))
        else:
            mel = np.asarray(mel_frames, dtype=np.float32)
            if mel.ndim != 3 or mel.shape[0] != count or 0 in mel.shape:
                raise ValueError(
                    f"mel_frames must be [{count}, frames, n_mels], got shape {mel.shape}"
                )
            if self._previous_mel is not None and mel.shape[2] != len(self._previous_mel):
                raise ValueError("n_mels changed within the stream")
            if not np.isfinite(mel.sum()):
                raise ValueError("mel_frames contain NaN or Inf")
            self._source = source
            self._add_onset(mel.reshape(-1, mel.shape[2]))
            self._timbre.append(_timbre(mel).astype(np.float16))
            self._mel_counts.extend([mel.shape[1]] * count)
        tonal = self._chroma(pcm)
        self._tonal.append(tonal.astype(np.float16))
        self._chroma_counts.extend([len(tonal) // count] * count)
        self._window_lengths.extend([length] * count)

    def _add_onset(self, mel: F32) -> None:
        if len(mel):
            self._onset.append(spectral_flux(mel, self._previous_mel).astype(np.float16))
            self._previous_mel = mel[-1].copy()

    def features(self) -> StructureFeatures:
        """The accumulated features with their times."""
        sr = self.sample_rate_hz
        lengths = np.asarray(self._window_lengths, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        # Flux k compares frames k-1 and k: it is dated at the start of frame k. The model's
        # frames tile each window evenly; the own log-mel tiles the song.
        if self._source == "mel":
            onset_times = _spread(starts, lengths, self._mel_counts, 0.0) / sr
        else:
            onset_times = np.arange(sum(self._mel_counts)) * self._log_mel.hop / sr
        chroma_times = _spread(starts, lengths, self._chroma_counts, 0.5) / sr
        timbre_times = _spread(starts, lengths, [TIMBRE_PER_WINDOW] * len(lengths), 0.5) / sr

        def cat(parts: list[npt.NDArray[np.float16]], width: int) -> F32:
            if not parts:
                return np.zeros((0, width), np.float32)
            return np.concatenate(parts).astype(np.float32)

        onset = cat(self._onset, 2)
        tonal = cat(self._tonal, 13)

        return StructureFeatures(
            sample_rate_hz=sr,
            duration_s=float(lengths.sum()) / sr,
            onset_times_s=np.asarray(onset_times, dtype=np.float64),
            onset_full=onset[:, 0],
            onset_low=onset[:, 1],
            chroma_times_s=np.asarray(chroma_times, dtype=np.float64),
            chroma=tonal[:, :12],
            level_db=tonal[:, 12],
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
                ],
                dtype=np.int64,
            ),
            "window_lengths": np.asarray(self._window_lengths, dtype=np.int32),
            "mel_counts": np.asarray(self._mel_counts, dtype=np.int32),
            "chroma_counts": np.asarray(self._chroma_counts, dtype=np.int32),
            "onset": _cat16(self._onset, 2),
            "tonal": _cat16(self._tonal, 13),
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
        sample_rate, source_code = (int(v) for v in arrays["meta"])
        state = cls(sample_rate)
        state._source = {0: None, 1: "pcm", 2: "mel"}[source_code]
        lengths = [int(v) for v in arrays["window_lengths"]]
        mel_counts = [int(v) for v in arrays["mel_counts"]]
        chroma_counts = [int(v) for v in arrays["chroma_counts"]]
        if not len(lengths) == len(mel_counts) == len(chroma_counts):
            raise ValueError("inconsistent window counts")
        state._window_lengths = lengths
        state._mel_counts = mel_counts
        state._onset = _split(arrays["onset"], mel_counts)
        state._tonal = _split(arrays["tonal"], chroma_counts)
        state._chroma_counts = chroma_counts
        state._timbre = _split(arrays["timbre"], [TIMBRE_PER_WINDOW] * len(lengths))
        previous = np.asarray(arrays["previous_mel"], dtype=np.float32)
        state._previous_mel = previous if len(previous) else None
        state._tail = np.asarray(arrays["tail"], dtype=np.float32)
        for parts, width in ((state._onset, 2), (state._tonal, 13), (state._timbre, 13)):
            if parts and parts[0].shape[1:] != (width,):
                raise ValueError("a feature has the wrong width")
        return state


def analyze_audio(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureResult:
    """Structure of a whole mono song, computed exactly as a stream of 1 s windows would be."""
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    state = StructureAccumulator(sample_rate_hz)
    for start in range(0, len(audio), sample_rate_hz):
        state.push(audio[start : start + sample_rate_hz])
    return state.analyze()


@lru_cache(maxsize=4)
def _dct_matrix(n_mels: int) -> F32:
    """Orthonormal DCT-II basis [n_mels, TIMBRE_COEFFS] (zero columns beyond n_mels)."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)
    out = np.zeros((n_mels, TIMBRE_COEFFS), np.float32)
    width = min(TIMBRE_COEFFS, n_mels)
    out[:, :width] = basis[:width].T
    return out


@lru_cache(maxsize=8)
def _half_means(frames: int) -> F32:
    """[TIMBRE_PER_WINDOW, frames]: averages over each part of a window's frames."""
    out = np.zeros((TIMBRE_PER_WINDOW, frames), np.float32)
    for i, part in enumerate(np.array_split(np.arange(frames), TIMBRE_PER_WINDOW)):
        part = part if len(part) else np.arange(frames)
        out[i, part] = 1.0 / len(part)
    return out


def _timbre(log_mel: F32) -> F32:
    """Cepstral summary of each half of each window's log-mel frames [windows, frames, n_mels]
    as [windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS]."""
    windows, frames, n_mels = log_mel.shape
    if frames == 0:
        return np.zeros((windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS), np.float32)
    means = _half_means(frames) @ log_mel
    out: F32 = (means.reshape(-1, n_mels) @ _dct_matrix(n_mels)).astype(np.float32)
    return out


def _spread(
    starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64], counts: list[int], at: float
) -> npt.NDArray[np.float64]:
    """Sample positions of `counts[i]` evenly spaced items in window i, `at` of the way in."""
    n = np.asarray(counts, dtype=np.int64)
    first = np.cumsum(n) - n
    index = np.arange(int(n.sum())) - np.repeat(first, n) + at
    spacing = np.repeat(lengths / np.maximum(n, 1), n)
    out: npt.NDArray[np.float64] = np.repeat(starts, n) + index * spacing
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
