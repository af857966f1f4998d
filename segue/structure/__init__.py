"""Music structure: tempo, beats, downbeats, key, sections and cue points, computed streaming."""

from segue.structure.accumulator import StructureAccumulator, analyze_audio
from segue.structure.camelot import camelot, camelot_neighbours, key_name, parse_camelot
from segue.structure.result import CuePoint, KeyEstimate, Section, StructureResult, fill_analysis

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
