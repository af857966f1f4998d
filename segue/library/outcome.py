"""What a run produced per file, and the summary a person and a script read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segue.library.sources import Source
from segue.v1 import common_pb2

# Failure reasons, one word each, as the summary and the JSON output give them.
VANISHED = "vanished"  # listed, then gone before it was read
UNREADABLE = "unreadable"  # permission denied
EMPTY = "empty"  # zero bytes
NOT_A_FILE = "not-a-file"  # a folder or device with an audio suffix
UNDECODABLE = "undecodable"  # ffmpeg refused it: not audio, or corrupt
TRUNCATED = "truncated"  # its audio ends well before the duration its header declares
NO_AUDIO = "no-audio"  # decoded to nothing
ANALYSIS = "analysis"  # the engine or the embedder failed on it
STORE = "store"  # the matcher failed to check or store it


@dataclass(frozen=True)
class Done:
    """A file analysed: its analysis as serialized SongAnalysis bytes (cheap to pickle)."""

    source: Source
    analysis_bytes: bytes
    audio_s: float
    size: int
    mtime_ns: int

    @property
    def analysis(self) -> common_pb2.SongAnalysis:
        return common_pb2.SongAnalysis.FromString(self.analysis_bytes)


@dataclass(frozen=True)
class Failed:
    """A file that could not be analysed, and why."""

    source: Source
    reason: str
    detail: str
    # The service was unreachable: later files would fail alike, so a caller may stop.
    service_down: bool = False

    def as_json(self) -> dict[str, str]:
        return {"file": str(self.source.path), "reason": self.reason, "detail": self.detail}


Outcome = Done | Failed


@dataclass
class Summary:
    """Counts of a run and every failure by path."""

    analysed: int = 0
    unchanged: int = 0
    audio_s: float = 0.0
    failures: list[Failed] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, Done):
            self.analysed += 1
            self.audio_s += outcome.audio_s
        else:
            self.failures.append(outcome)

    @property
    def exit_code(self) -> int:
        """The number of failed files, capped at 125 (the shell keeps 126+ for itself)."""
        return min(len(self.failures), 125)

    def as_json(self) -> dict[str, Any]:
        return {"analysed": self.analysed, "unchanged": self.unchanged,
                "failed": len(self.failures), "audio_s": round(self.audio_s, 3),
                "failures": [f.as_json() for f in self.failures]}  # fmt: skip

    def lines(self) -> list[str]:
        """A person's summary: one line of counts, then one line per failure."""
        head = (f"analysed {self.analysed}, unchanged {self.unchanged}, "
                f"failed {len(self.failures)}")  # fmt: skip
        return [head, *(f"  {f.source.path}: {f.reason}: {f.detail}" for f in self.failures)]


__all__ = [
    "ANALYSIS",
    "EMPTY",
    "NOT_A_FILE",
    "NO_AUDIO",
    "STORE",
    "TRUNCATED",
    "UNDECODABLE",
    "UNREADABLE",
    "VANISHED",
    "Done",
    "Failed",
    "Outcome",
    "Summary",
]  # fmt: skip
