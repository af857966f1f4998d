"""Music structure: tempo, beats, downbeats, key, sections and cue points, computed streaming."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segue.structure.accumulator import StructureAccumulator, analyze_audio
    from segue.structure.camelot import camelot, camelot_neighbours, key_name, parse_camelot
    from segue.structure.result import (
        CuePoint,
        KeyEstimate,
        Section,
        StructureResult,
        fill_analysis,
    )

# Imported on first use: the key names (camelot) serve exports and the CLI, which need not
# import the analysis and scipy (0.17 s) to print a key.
_HOMES = {
    "StructureAccumulator": "accumulator",
    "analyze_audio": "accumulator",
    "camelot": "camelot",
    "camelot_neighbours": "camelot",
    "key_name": "camelot",
    "parse_camelot": "camelot",
    "CuePoint": "result",
    "KeyEstimate": "result",
    "Section": "result",
    "StructureResult": "result",
    "fill_analysis": "result",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'segue.structure' has no attribute {name!r}")
    return getattr(importlib.import_module(f"segue.structure.{_HOMES[name]}"), name)


__all__ = [
    "CuePoint",
    "KeyEstimate",
    "Section",
    "StructureAccumulator",
    "StructureResult",
    "analyze_audio",
    "camelot",
    "camelot_neighbours",
    "fill_analysis",
    "key_name",
    "parse_camelot",
]
