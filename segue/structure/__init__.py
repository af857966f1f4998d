"""Music structure: tempo, beats, downbeats, key, sections and cue points, computed streaming."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segue.lazy_exports import lazy_exports

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


__getattr__ = lazy_exports("segue.structure", _HOMES)


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
