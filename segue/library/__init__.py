"""Whole-library analysis: many files, all cores, resumable.

One engine serves `segue analyze DIR|FILES`, `segue index DIR` and batch callers:
`sources` finds the files, `ledger` remembers what was finished, `engine` analyses one file
with the audio streamed from ffmpeg, `pool` spreads files over worker processes (one ONNX
session each), `remote` keeps embedder replicas busy instead, `progress` shows the rate and
`outcome` holds each file's result or the reason it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segue.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from segue.library.ledger import Ledger
    from segue.library.outcome import Done, Failed, Outcome, Summary
    from segue.library.pool import analyze_local
    from segue.library.remote import analyze_remote
    from segue.library.sources import AUDIO_SUFFIXES, Source, find_sources

# Imported on first use: a pool worker needs the engine, not gRPC (23 MB less per worker).
_HOMES = {
    "AUDIO_SUFFIXES": "sources",
    "Source": "sources",
    "find_sources": "sources",
    "Done": "outcome",
    "Failed": "outcome",
    "Outcome": "outcome",
    "Summary": "outcome",
    "Ledger": "ledger",
    "analyze_local": "pool",
    "analyze_remote": "remote",
}


__getattr__ = lazy_exports("segue.library", _HOMES)


__all__ = [
    "AUDIO_SUFFIXES",
    "Done",
    "Failed",
    "Ledger",
    "Outcome",
    "Source",
    "Summary",
    "analyze_local",
    "analyze_remote",
    "find_sources",
]
