"""Streaming feature extraction for structure analysis, with a compact resumable state."""

from __future__ import annotations

import io
import math
import struct
import zlib
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.fft

from segue.structure.chroma import ChromaExtractor, level_db
from segue.structure.features import StructureFeatures
from segue.structure.onset import LogMel, spectral_flux
from segue.structure.result import StructureResult

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]

TIMBRE_COEFFS = 13
# Timbre summaries per pushed window (each covers the mel frames of one half).
TIMBRE_PER_WINDOW = 2
TONAL_WIDTH = 13  # 12 chroma classes and the level
ONSET_WIDTH = 2  # flux over all bands and over the bass bands
MAX_WINDOW_S = 4.0
# Windows held back and analysed together: the FFTs and the flux then run once per group
# instead of once per window, which is most of their fixed cost. A held window keeps only
# its decimated chroma excerpts and mel frames: the group's buffers take about 185 kB per
# stream at 22050 Hz. to_bytes analyses what is held, so checkpoints every 5 s make groups
# of 5 windows in the embedder.
PENDING_WINDOWS = 8

_MAGIC = b"SGST"
# 2: onsets on the model's own 490-sample frame grid (npz, zlib).
# 3: raw little-endian arrays; each growing array carries a running CRC-32, so writing the
#    state costs a copy, not a pass over the whole song's features.
_VERSION = 3
_READABLE = (2, 3)
_HEADER = struct.Struct("<4sHI")
# sample rate, source, n_mels of previous_mel (0: none), windows, onset rows, tonal rows,
# tail samples, then the CRC-32 of the windows, onset, tonal and timbre arrays.
_FIXED = struct.Struct("<IBxHIIII4I")

Source = Literal["pcm", "mel"]
_SOURCE_CODES: dict[Source | None, int] = {None: 0, "pcm": 1, "mel": 2}
_SOURCES = {code: source for source, code in _SOURCE_CODES.items()}


class _Rows:
    """A growable [rows, width] array with the CRC-32 of its bytes so far: appending costs
    only the new rows, and serialising needs no pass over the old ones."""

    def __init__(self, width: int, dtype: str, capacity: int = 64) -> None:
        self._data = np.zeros((capacity, width), dtype)
        self._size = 0
        self.crc = 0

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> npt.NDArray[np.generic]:
        return self._data[: self._size]

    def append(self, rows: npt.NDArray[np.generic]) -> None:
        """Adds rows [k, width] (cast to the stored type)."""
        end = self._size + len(rows)
        if end > len(self._data):
            grown = np.zeros((max(end, 2 * len(self._data)), self._data.shape[1]), self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        added = self._data[self._size : end]
        added[...] = rows
        self.crc = zlib.crc32(added.data, self.crc)
        self._size = end

    @classmethod
    def of(cls, values: npt.ArrayLike, width: int, dtype: str) -> _Rows:
        array = np.asarray(values, dtype=dtype).reshape(-1, width)
        rows = cls(width, dtype, max(64, len(array)))
        rows.append(array)
        return rows


class _Pending:
    """Windows of one shape pushed but not yet analysed, in buffers reused group by group."""

    def __init__(self, length: int, parts: int, excerpt: int, frames: int, n_mels: int) -> None:
        self.shape = (length, frames, n_mels)
        self.parts = parts
        self.windows = 0
        self.excerpts = np.empty((PENDING_WINDOWS * parts, excerpt), np.float32)
        self.energy = np.empty(PENDING_WINDOWS, np.float32)
        self.mel = np.empty((PENDING_WINDOWS, frames, n_mels), np.float32)


class StructureAccumulator:
    """Features for structure analysis, accumulated window by window.

    Each window's features depend only on that window plus a little carried state (the
    previous log-mel frame and, when computing log-mel itself, the PCM that straddles a
    frame), so features do not depend on how the song was cut into windows beyond those
    carried values, nor on how windows were grouped into pushes. Stored features are
    float16 from the start, so a state restored by from_bytes continues exactly as the
    original would.
    """

    def __init__(self, sample_rate_hz: int = 22050) -> None:
        if not 4000 <= sample_rate_hz <= 192000:
            raise ValueError(f"unsupported sample rate {sample_rate_hz}")
        self.sample_rate_hz = sample_rate_hz
        self._chroma = ChromaExtractor(sample_rate_hz)
        self._log_mel: LogMel | None = None
        self._max_samples = MAX_WINDOW_S * sample_rate_hz
        self._source: Source | None = None
        # Per window: samples, mel frames, chroma frames.
        self._windows = _Rows(3, "<i4")
        self._onset = _Rows(ONSET_WIDTH, "<f2")
        self._tonal = _Rows(TONAL_WIDTH, "<f2")
        self._timbre = _Rows(TIMBRE_COEFFS, "<f2")
        self._previous_mel: F32 | None = None
        # Own log-mel only: samples of a frame that the next push completes.
        self._tail = np.zeros(0, np.float32)
        self._pending: _Pending | None = None
        self._samples = 0

    @property
    def duration_s(self) -> float:
        return self._samples / self.sample_rate_hz

    @property
    def windows_pushed(self) -> int:
        return len(self._windows) + (self._pending.windows if self._pending else 0)

    def push(self, window_pcm: npt.ArrayLike, mel_frames: npt.ArrayLike | None = None) -> None:
        """Adds one window of mono PCM and, optionally, the model's log-mel frames of it.

        With `mel_frames` ([frames, n_mels], natural log, frames spread evenly over the
        window) onsets come from them; without, from `LogMel`, the same front end in numpy.
        A stream must use one or the other throughout.
        """
        pcm = np.asarray(window_pcm, dtype=np.float32).reshape(1, -1)
        if mel_frames is None:
            self._push(pcm, None)
            return
        mel = np.asarray(mel_frames, dtype=np.float32)
        if mel.ndim != 2:
            raise ValueError(f"mel_frames must be [frames, n_mels], got shape {mel.shape}")
        self._push(pcm, mel[None])

    def push_batch(
        self, windows_pcm: npt.ArrayLike, mel_frames: npt.ArrayLike | None = None
    ) -> None:
        """Adds windows of equal length at once ([windows, samples], with mel_frames [windows,
        frames, n_mels] or None): the same state as pushing them one by one."""
        pcm = np.asarray(windows_pcm, dtype=np.float32)
        if pcm.ndim != 2:
            raise ValueError(f"windows must be [windows, samples], got shape {pcm.shape}")
        self._push(pcm, None if mel_frames is None else np.asarray(mel_frames, dtype=np.float32))

    def _push(self, pcm: F32, mel: F32 | None) -> None:
        count, length = pcm.shape
        if length == 0 or count == 0:
            raise ValueError(f"windows must be [windows, samples], got shape {pcm.shape}")
        if length > self._max_samples:
            raise ValueError(f"window of {length} samples exceeds {MAX_WINDOW_S} s")
        source: Source = "pcm" if mel is None else "mel"
        if self._source is not None and source != self._source:
            raise ValueError("a stream must always or never pass mel_frames")
        energy = self._chroma.mean_square(pcm)
        # A NaN or Inf sample makes its window's mean square, and so their sum, non-finite.
        if not math.isfinite(float(energy.sum())):
            raise ValueError("window contains NaN or Inf samples")
        if mel is None:
            runs = self._own_log_mel(pcm)
        else:
            if mel.ndim != 3 or mel.shape[0] != count or 0 in mel.shape:
                raise ValueError(
                    f"mel_frames must be [{count}, frames, n_mels], got shape {mel.shape}"
                )
            n_mels = self._n_mels()
            if n_mels and mel.shape[2] != n_mels:
                raise ValueError("n_mels changed within the stream")
            if not math.isfinite(float(mel.sum())):
                raise ValueError("mel_frames contain NaN or Inf")
            runs = [mel]
        self._source = source
        start = 0
        for run in runs:
            stop = start + len(run)
            self._enqueue(pcm[start:stop], energy[start:stop], run)
            start = stop

    def _enqueue(self, pcm: F32, energy: F32, mel: F32) -> None:
        """Holds windows of one shape back, analysing them once PENDING_WINDOWS wait."""
        length = pcm.shape[1]
        pending = self._pending
        if pending is None or pending.shape != (length, *mel.shape[1:]):
            self._flush()
            parts, _ = self._chroma.frames_of(length)
            pending = _Pending(length, parts, self._chroma.excerpt_samples, *mel.shape[1:])
            self._pending = pending
        done = 0
        while done < len(pcm):
            slot = pending.windows
            take = min(len(pcm) - done, PENDING_WINDOWS - slot)
            rows = slice(slot * pending.parts, (slot + take) * pending.parts)
            self._chroma.decimate(pcm[done : done + take], pending.excerpts[rows])
            pending.energy[slot : slot + take] = energy[done : done + take]
            pending.mel[slot : slot + take] = mel[done : done + take]
            pending.windows += take
            self._samples += take * length
            done += take
            if pending.windows == PENDING_WINDOWS:
                self._flush()

    def _n_mels(self) -> int:
        if self._pending is not None:
            return self._pending.shape[2]
        return 0 if self._previous_mel is None else len(self._previous_mel)

    def _own_log_mel(self, pcm: F32) -> list[F32]:
        """The numpy front end's frames of the windows, as [windows, frames, N_MELS] runs of
        equal frame counts (counts differ when frames straddle windows)."""
        if self._log_mel is None:
            self._log_mel = LogMel(self.sample_rate_hz)
        runs: list[list[F32]] = []
        for window in pcm:
            mel, self._tail = self._log_mel.frames(self._tail, window)
            if runs and len(runs[-1][0]) == len(mel):
                runs[-1].append(mel)
            else:
                runs.append([mel])
        return [np.stack(run) for run in runs]

    def _flush(self) -> None:
        """Analyses the pending windows into the stored features."""
        pending = self._pending
        if pending is None or not pending.windows:
            return
        count, parts = pending.windows, pending.parts
        length, frames, n_mels = pending.shape
        pending.windows = 0
        excerpts = pending.excerpts[: count * parts]
        mel = pending.mel[:count]
        tonal = np.empty((count * parts, TONAL_WIDTH), np.float32)
        tonal[:, :12] = self._chroma.fold(excerpts)
        tonal[:, 12] = np.repeat(level_db(pending.energy[:count]), parts)
        self._tonal.append(tonal)
        self._timbre.append(_timbre(mel))
        if frames:
            flat = mel.reshape(-1, n_mels)
            last = flat[-1].copy()
            self._onset.append(spectral_flux(flat, self._previous_mel, overwrite=True))
            self._previous_mel = last
        per_window = np.empty((count, 3), np.int32)
        per_window[:] = (length, frames, parts)
        self._windows.append(per_window)

    def features(self) -> StructureFeatures:
        """The accumulated features with their times."""
        self._flush()
        sr = self.sample_rate_hz
        windows = self._windows.values.astype(np.int64)
        lengths = windows[:, 0]
        starts = np.cumsum(lengths) - lengths
        # Flux k compares frames k-1 and k: it is dated at the start of frame k. The model's
        # frames tile each window evenly; the own log-mel tiles the song.
        if self._source == "pcm":
            hop = LogMel(sr).hop if self._log_mel is None else self._log_mel.hop
            onset_times = np.arange(int(windows[:, 1].sum())) * hop / sr
        else:
            onset_times = _spread(starts, lengths, windows[:, 1], 0.0) / sr
        chroma_times = _spread(starts, lengths, windows[:, 2], 0.5) / sr
        timbre_counts = np.full(len(lengths), TIMBRE_PER_WINDOW)
        timbre_times = _spread(starts, lengths, timbre_counts, 0.5) / sr
        onset = self._onset.values.astype(np.float32)
        tonal = self._tonal.values.astype(np.float32)
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
            timbre=self._timbre.values.astype(np.float32),
        )

    def analyze(self) -> StructureResult:
        """Final analysis of everything pushed so far (pushing may continue afterwards)."""
        from segue.structure.analysis import analyze_features

        return analyze_features(self.features())

    def to_bytes(self) -> bytes:
        """Versioned, checksummed state (about 350 bytes per second of audio)."""
        self._flush()
        previous = np.zeros(0, np.float32) if self._previous_mel is None else self._previous_mel
        fixed = _FIXED.pack(
            self.sample_rate_hz,
            _SOURCE_CODES[self._source],
            len(previous),
            len(self._windows),
            len(self._onset),
            len(self._tonal),
            len(self._tail),
            self._windows.crc,
            self._onset.crc,
            self._tonal.crc,
            self._timbre.crc,
        )
        small = [fixed, previous.astype("<f4").tobytes(), self._tail.astype("<f4").tobytes()]
        crc = zlib.crc32(b"".join(small))
        return b"".join(
            [
                _HEADER.pack(_MAGIC, _VERSION, crc),
                fixed,
                self._windows.values.data,
                self._onset.values.data,
                self._tonal.values.data,
                self._timbre.values.data,
                small[1],
                small[2],
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StructureAccumulator:
        """Restores a state written by to_bytes; ValueError when corrupt or of another version."""
        if len(data) < _HEADER.size:
            raise ValueError("structure state too short")
        magic, version, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a structure state")
        if version not in _READABLE:
            raise ValueError(f"unsupported structure state version {version}")
        try:
            if version == 2:
                return cls._from_v2(data[_HEADER.size :], crc)
            return cls._from_v3(memoryview(data)[_HEADER.size :], crc)
        except ValueError:
            raise
        except Exception as error:  # any decoding failure means a corrupt state
            raise ValueError(f"corrupt structure state: {error}") from error

    @classmethod
    def _from_v3(cls, body: memoryview, crc: int) -> StructureAccumulator:
        if len(body) < _FIXED.size:
            raise ValueError("structure state too short")
        fixed = body[: _FIXED.size]
        (rate, source_code, n_mels, windows, onsets, tonals, tail, *crcs) = _FIXED.unpack(fixed)
        shapes = [
            ((windows, 3), "<i4"),
            ((onsets, ONSET_WIDTH), "<f2"),
            ((tonals, TONAL_WIDTH), "<f2"),
            ((windows * TIMBRE_PER_WINDOW, TIMBRE_COEFFS), "<f2"),
            ((n_mels,), "<f4"),
            ((tail,), "<f4"),
        ]
        sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes]
        if len(body) != _FIXED.size + sum(sizes):
            raise ValueError("structure state has the wrong length")
        arrays = []
        position = _FIXED.size
        for (shape, dtype), size in zip(shapes, sizes, strict=True):
            arrays.append(np.frombuffer(body[position : position + size], dtype).reshape(shape))
            position += size
        if zlib.crc32(b"".join([fixed, arrays[4].tobytes(), arrays[5].tobytes()])) != crc or any(
            zlib.crc32(a.data) != c for a, c in zip(arrays[:4], crcs, strict=True)
        ):
            raise ValueError("structure state checksum mismatch")
        if source_code not in _SOURCES:
            raise ValueError("unknown feature source")
        state = cls(rate)
        state._source = _SOURCES[source_code]
        state._set_features(*arrays[:4])
        state._previous_mel = arrays[4].astype(np.float32) if n_mels else None
        state._tail = arrays[5].astype(np.float32)
        return state

    @classmethod
    def _from_v2(cls, payload: bytes, crc: int) -> StructureAccumulator:
        """Version 2 states (npz in zlib), so tokens issued before an upgrade stay valid."""
        if zlib.crc32(payload) != crc:
            raise ValueError("structure state checksum mismatch")
        with np.load(io.BytesIO(zlib.decompress(payload)), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        sample_rate, source_code = (int(v) for v in arrays["meta"])
        state = cls(sample_rate)
        state._source = _SOURCES[source_code]
        names = ("window_lengths", "mel_counts", "chroma_counts")
        counts = [arrays[k].astype(np.int32) for k in names]
        if not len(counts[0]) == len(counts[1]) == len(counts[2]):
            raise ValueError("inconsistent window counts")
        state._set_features(
            np.stack(counts, axis=1).reshape(-1, 3),
            arrays["onset"].reshape(-1, ONSET_WIDTH),
            arrays["tonal"].reshape(-1, TONAL_WIDTH),
            arrays["timbre"].reshape(-1, TIMBRE_COEFFS),
        )
        previous = np.asarray(arrays["previous_mel"], dtype=np.float32)
        state._previous_mel = previous if len(previous) else None
        state._tail = np.asarray(arrays["tail"], dtype=np.float32)
        return state

    def _set_features(
        self,
        windows: npt.NDArray[np.int32],
        onset: F16,
        tonal: F16,
        timbre: F16,
    ) -> None:
        if np.any(windows < 0) or len(timbre) != TIMBRE_PER_WINDOW * len(windows):
            raise ValueError("inconsistent window counts")
        if windows[:, 1].sum() != len(onset) or windows[:, 2].sum() != len(tonal):
            raise ValueError("feature lengths do not match window counts")
        self._windows = _Rows.of(windows, 3, "<i4")
        self._onset = _Rows.of(onset, ONSET_WIDTH, "<f2")
        self._tonal = _Rows.of(tonal, TONAL_WIDTH, "<f2")
        self._timbre = _Rows.of(timbre, TIMBRE_COEFFS, "<f2")
        self._samples = int(windows[:, 0].astype(np.int64).sum())


def analyze_audio(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureResult:
    """Structure of a whole mono song, computed exactly as a stream of 1 s windows would be."""
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    state = StructureAccumulator(sample_rate_hz)
    whole = len(audio) // sample_rate_hz
    if whole:
        state.push_batch(audio[: whole * sample_rate_hz].reshape(whole, sample_rate_hz))
    if len(audio) > whole * sample_rate_hz:
        state.push(audio[whole * sample_rate_hz :])
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
    out: F32 = (means.reshape(-1, n_mels) @ _dct_matrix(n_mels)).astype(np.float32, copy=False)
    return out


def _spread(
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    at: float,
) -> npt.NDArray[np.float64]:
    """Sample positions of `counts[i]` evenly spaced items in window i, `at` of the way in."""
    n = np.asarray(counts, dtype=np.int64)
    first = np.cumsum(n) - n
    index = np.arange(int(n.sum())) - np.repeat(first, n) + at
    spacing = np.repeat(lengths / np.maximum(n, 1), n)
    out: npt.NDArray[np.float64] = np.repeat(starts, n) + index * spacing
    return out
