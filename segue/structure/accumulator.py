"""Streaming structure features, window by window, with a compact resumable state.

The work is split three ways: `window_features` computes features (pure functions),
`pending.PendingWindows` holds windows back so a group is analysed at once, and
`state_codec` turns the state into bytes and back. This class validates pushes, stores the
analysed rows, and decides when a group is analysed: only `push` and `flush` change it;
`features()` and `to_bytes()` analyse windows still held back on the side, changing nothing.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from segue.structure.chroma import ChromaExtractor
from segue.structure.features import StructureFeatures
from segue.structure.onset import N_MELS, LogMel
from segue.structure.pending import PendingWindows
from segue.structure.result import StructureResult
from segue.structure.state_codec import (
    FEATURE_DTYPE,
    WINDOWS_DTYPE,
    Rows,
    StructureState,
    decode,
    encode,
)
from segue.structure.window_features import (
    ONSET_WIDTH,
    TIMBRE_COEFFS,
    TONAL_WIDTH,
    WINDOW_WIDTH,
    FeatureRows,
    Source,
    log_mel_runs,
    structure_features,
)

F32 = npt.NDArray[np.float32]
T = TypeVar("T", bound=np.generic)

MAX_WINDOW_S = 4.0


class StructureAccumulator:
    """Features for structure analysis, accumulated window by window.

    Each window's features depend only on that window plus a little carried state (the
    previous log-mel frame and, when computing log-mel itself, the PCM that straddles a
    frame), so features do not depend on how the song was cut into windows beyond those
    carried values, nor on how windows were grouped into pushes or analysed in groups.
    Stored features are float16 from the start, so a state restored by from_bytes
    continues exactly as the original would.
    """

    def __init__(self, sample_rate_hz: int = 22050) -> None:
        if not 4000 <= sample_rate_hz <= 192000:
            raise ValueError(f"unsupported sample rate {sample_rate_hz}")
        self.sample_rate_hz = sample_rate_hz
        self._chroma = ChromaExtractor(sample_rate_hz)
        self._max_samples = MAX_WINDOW_S * sample_rate_hz
        self._source: Source | None = None
        self._windows = Rows(WINDOW_WIDTH, WINDOWS_DTYPE)
        self._onset = Rows(ONSET_WIDTH, FEATURE_DTYPE)
        self._tonal = Rows(TONAL_WIDTH, FEATURE_DTYPE)
        self._timbre = Rows(TIMBRE_COEFFS, FEATURE_DTYPE)
        self._previous_mel: F32 | None = None
        # Own log-mel only: samples of a frame that the next push completes.
        self._tail = np.zeros(0, np.float32)
        self._pending: PendingWindows | None = None
        self._samples = 0

    @property
    def duration_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._samples / self.sample_rate_hz

    @property
    def windows_pushed(self) -> int:
        """Windows pushed so far, held-back ones included."""
        return len(self._windows) + (self._pending.count if self._pending else 0)

    @cached_property
    def _log_mel(self) -> LogMel:
        """Our own log-mel front end, built for streams that push PCM only."""
        return LogMel(self.sample_rate_hz)

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
        mean_square = self._chroma.mean_square(pcm)
        # A NaN or Inf sample makes its window's mean square, and so their sum, non-finite.
        if not math.isfinite(float(mean_square.sum())):
            raise ValueError("window contains NaN or Inf samples")
        if mel is None:
            runs, self._tail = log_mel_runs(self._log_mel, self._tail, pcm)
        else:
            self._check_mel(mel, count)
            runs = [mel]
        self._source = source
        start = 0
        for run in runs:
            stop = start + len(run)
            self._enqueue(pcm[start:stop], mean_square[start:stop], run)
            start = stop

    def _check_mel(self, mel: F32, count: int) -> None:
        """ValueError unless `mel` holds finite [count, frames, n_mels] frames with the
        stream's band count."""
        if mel.ndim != 3 or mel.shape[0] != count or 0 in mel.shape:
            raise ValueError(f"mel_frames must be [{count}, frames, n_mels], got shape {mel.shape}")
        n_mels = self._n_mels()
        if n_mels and mel.shape[2] != n_mels:
            raise ValueError("n_mels changed within the stream")
        if not math.isfinite(float(mel.sum())):
            raise ValueError("mel_frames contain NaN or Inf")

    def _n_mels(self) -> int:
        if self._pending is not None:
            return self._pending.shape[2]
        return 0 if self._previous_mel is None else len(self._previous_mel)

    def _enqueue(self, pcm: F32, mean_square: F32, mel: F32) -> None:
        """Holds windows of one shape back, analysing a group once it is full."""
        length = pcm.shape[1]
        pending = self._pending
        if pending is None or pending.shape != (length, *mel.shape[1:]):
            self.flush()
            pending = PendingWindows(self._chroma, length, *mel.shape[1:])
            self._pending = pending
        done = 0
        while done < len(pcm):
            take = pending.add(pcm, mean_square, mel, done)
            self._samples += take * length
            done += take
            if pending.full:
                self.flush()

    def flush(self) -> None:
        """Analyses the windows held back for a group into the stored features.

        Push calls this when a group is full. Reads never need it (they analyse held windows
        on the side); a writer that reads at known points, such as checkpoints, may call it
        first so that held windows are analysed once, not again at every read.
        """
        if self._pending is None or not self._pending.count:
            return
        self._store(self._pending.drain(self._previous_mel))

    def _store(self, rows: FeatureRows) -> None:
        self._windows.append(rows.windows)
        self._onset.append(rows.onset)
        self._tonal.append(rows.tonal)
        self._timbre.append(rows.timbre)
        self._previous_mel = rows.last_mel

    def _state(self) -> StructureState:
        """Everything pushed so far, held windows included, as stored; changes nothing."""
        if self._pending is None or not self._pending.count:
            return StructureState(
                self.sample_rate_hz,
                self._source,
                self._windows.stored(),
                self._onset.stored(),
                self._tonal.stored(),
                self._timbre.stored(),
                self._previous_mel,
                self._tail,
            )
        held = self._pending.analyse(self._previous_mel)
        return StructureState(
            self.sample_rate_hz,
            self._source,
            self._windows.stored(held.windows),
            self._onset.stored(held.onset),
            self._tonal.stored(held.tonal),
            self._timbre.stored(held.timbre),
            held.last_mel,
            self._tail,
        )

    def features(self) -> StructureFeatures:
        """The accumulated features with their times (changes nothing)."""
        state = self._state()
        return structure_features(
            self.sample_rate_hz,
            state.source,
            _joined(state.windows.parts, np.int32),
            _joined(state.onset.parts, np.float32),
            _joined(state.tonal.parts, np.float32),
            _joined(state.timbre.parts, np.float32),
            N_MELS if state.previous_mel is None else len(state.previous_mel),
        )

    def analyze(self) -> StructureResult:
        """Final analysis of everything pushed so far (pushing may continue afterwards)."""
        from segue.structure.analysis import analyze_features

        return analyze_features(self.features())

    def to_bytes(self) -> bytes:
        """Versioned, checksummed state (about 530 bytes per second of audio); changes
        nothing."""
        return encode(self._state())

    @classmethod
    def from_bytes(cls, data: bytes) -> StructureAccumulator:
        """Restores a state written by to_bytes; ValueError when corrupt or of another version."""
        state = decode(data)
        restored = cls(state.sample_rate_hz)
        restored._source = state.source
        restored._windows = Rows.of(state.windows)
        restored._onset = Rows.of(state.onset)
        restored._tonal = Rows.of(state.tonal)
        restored._timbre = Rows.of(state.timbre)
        restored._previous_mel = state.previous_mel
        restored._tail = state.tail
        restored._samples = int(restored._windows.values[:, 0].astype(np.int64).sum())
        return restored


def _joined(parts: tuple[npt.NDArray[np.generic], ...], dtype: type[T]) -> npt.NDArray[T]:
    """Blocks of rows as one array of `dtype` (one copy)."""
    if len(parts) == 1:
        return parts[0].astype(dtype)
    return np.concatenate(parts, dtype=dtype)


def analyze_audio(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureResult:
    """Structure of a whole mono song, computed exactly as a stream of 1 s windows would be."""
    return _accumulated(pcm, sample_rate_hz).analyze()


def audio_features(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureFeatures:
    """The features a stream of 1 s windows of a whole mono song accumulates."""
    return _accumulated(pcm, sample_rate_hz).features()


def _accumulated(pcm: npt.ArrayLike, sample_rate_hz: int) -> StructureAccumulator:
    audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
    state = StructureAccumulator(sample_rate_hz)
    whole = len(audio) // sample_rate_hz
    if whole:
        state.push_batch(audio[: whole * sample_rate_hz].reshape(whole, sample_rate_hz))
    if len(audio) > whole * sample_rate_hz:
        state.push(audio[whole * sample_rate_hz :])
    return state
