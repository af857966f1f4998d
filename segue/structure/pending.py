"""Windows held back to be analysed together: the FFTs and the flux then run once per group
instead of once per window, which is most of their fixed cost."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from segue.structure.chroma import ChromaExtractor
from segue.structure.window_features import FeatureRows, analyse_windows

F32 = npt.NDArray[np.float32]

# A held window keeps only its decimated chroma excerpts and mel frames: a group's buffers
# take about 185 kB per stream at 22050 Hz. The embedder flushes at its checkpoints (every
# 5 s), so its groups hold 5 windows.
PENDING_WINDOWS = 8


class PendingWindows:
    """Up to PENDING_WINDOWS windows of one shape (samples, mel frames, mel bands), pushed but
    not yet analysed, in buffers reused group by group.

    `analyse` reads the group and leaves it as it was; `drain` analyses it in place (no
    copies) and empties the buffer, for the writer that stores the result.
    """

    def __init__(self, chroma: ChromaExtractor, length: int, frames: int, n_mels: int) -> None:
        self.shape = (length, frames, n_mels)
        self.parts, _ = chroma.frames_of(length)
        self.count = 0
        self._chroma = chroma
        self._excerpts = np.empty(
            (PENDING_WINDOWS * self.parts, chroma.excerpt_samples), np.float32
        )
        self._mean_square = np.empty(PENDING_WINDOWS, np.float32)
        self._mel = np.empty((PENDING_WINDOWS, frames, n_mels), np.float32)

    @property
    def full(self) -> bool:
        return self.count == PENDING_WINDOWS

    def add(self, pcm: F32, mean_square: F32, mel: F32, first: int = 0) -> int:
        """Holds windows `first`, `first + 1`, ... of `pcm` [windows, samples] (with their
        mean squares [windows] and log-mel frames [windows, frames, n_mels]) while they fit;
        returns how many it took."""
        held = self.count
        take = min(len(pcm) - first, PENDING_WINDOWS - held)
        end = first + take
        rows = self._excerpts[held * self.parts : (held + take) * self.parts]
        self._chroma.decimate(pcm[first:end], rows)
        self._mean_square[held : held + take] = mean_square[first:end]
        self._mel[held : held + take] = mel[first:end]
        self.count = held + take
        return take

    def analyse(self, previous_mel: F32 | None) -> FeatureRows:
        """Features of the held windows after the mel frame `previous_mel`; changes nothing."""
        return self._features(previous_mel, overwrite=False)

    def drain(self, previous_mel: F32 | None) -> FeatureRows:
        """Features of the held windows, computed in the buffers; the group is then empty."""
        rows = self._features(previous_mel, overwrite=True)
        self.count = 0
        return rows

    def _features(self, previous_mel: F32 | None, *, overwrite: bool) -> FeatureRows:
        held = self.count
        return analyse_windows(
            self._chroma,
            self._excerpts[: held * self.parts],
            self._mean_square[:held],
            self._mel[:held],
            self.shape[0],
            previous_mel,
            overwrite=overwrite,
        )
