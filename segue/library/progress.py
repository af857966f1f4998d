"""A progress bar with files per second and the audio analysed as a multiple of real time."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]


class Progress:
    """Counts files and audio seconds; draws on stderr when `enabled`."""

    def __init__(self, total: int, *, desc: str, enabled: bool = True) -> None:
        self._bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr,
                         disable=not enabled, dynamic_ncols=True)  # fmt: skip
        self._start = time.monotonic()
        self.audio_s = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def realtime_factor(self) -> float:
        """Audio seconds analysed per wall-clock second so far."""
        elapsed = time.monotonic() - self._start
        return self.audio_s / elapsed if elapsed > 0 else 0.0

    def advance(self, audio_s: float = 0.0) -> None:
        """One file done, holding `audio_s` seconds of audio (0 for a skipped or failed one)."""
        self.audio_s += audio_s
        self._bar.set_postfix_str(f"{self.realtime_factor():.0f}x real time", refresh=False)
        self._bar.update(1)

    def write(self, line: str) -> None:
        """A message above the bar."""
        self._bar.write(line, file=sys.stderr)


__all__ = ["Progress"]
