"""Payloads of song and segment points, and their conversion back to protobuf messages.

Empty metadata fields are left out of the payload rather than stored as "": a filter that
excludes an artist then keeps songs with no artist, and `conditions` on absent fields fail.
"""

from __future__ import annotations

from typing import Any

from segue.v1 import common_pb2, matcher_pb2

SONG = "song"
SEGMENT = "segment"
PENDING = "pending"
LIVE = "live"

_METADATA_FIELDS = ("title", "artist", "album", "genre", "uri")


def _metadata_payload(metadata: matcher_pb2.SongMetadata) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(metadata, name) for name in _METADATA_FIELDS}
    out = {k: v for k, v in out.items() if v}
    if metadata.extra:
        out["extra"] = dict(metadata.extra)
    return out


def _song_facts(analysis: common_pb2.SongAnalysis) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_name": analysis.model_name,
        "model_version": analysis.model_version,
        "duration_s": analysis.duration_s,
    }
    if analysis.HasField("tempo") and analysis.tempo.bpm > 0:
        out["tempo_bpm"] = analysis.tempo.bpm
    if analysis.HasField("key") and analysis.key.camelot:
        out["camelot"] = analysis.key.camelot.strip().upper()
        out["key"] = {
            "tonic": analysis.key.tonic_pitch_class,
            "mode": int(analysis.key.mode),
            "name": analysis.key.name,
            "confidence": analysis.key.confidence,
        }
    return out


def song_payload(
    analysis: common_pb2.SongAnalysis, metadata: matcher_pb2.SongMetadata, generation: str
) -> dict[str, Any]:
    """Payload of the song-level point; it carries the segment list so reads need no scroll."""
    segments = list(analysis.segments)
    energy = sum(s.energy for s in segments) / len(segments) if segments else 0.0
    return {
        "kind": SONG,
        "song_id": analysis.song_id,
        "generation": generation,
        "state": LIVE,
        "energy": energy,
        "loudness_lufs": analysis.loudness_lufs,
        "segment_count": len(segments),
        "segments": [[s.start_s, s.end_s, s.energy, s.section_letter] for s in segments],
        **_song_facts(analysis),
        **_metadata_payload(metadata),
    }


def segment_payload(
    analysis: common_pb2.SongAnalysis,
    metadata: matcher_pb2.SongMetadata,
    generation: str,
    segment: common_pb2.Segment,
    *,
    live: bool,
) -> dict[str, Any]:
    """Payload of one segment point; a replacement's segments are pending until it commits."""
    duration = analysis.duration_s if analysis.duration_s > 0 else max(segment.end_s, 1e-9)
    out: dict[str, Any] = {
        "kind": SEGMENT,
        "song_id": analysis.song_id,
        "generation": generation,
        "state": LIVE if live else PENDING,
        "segment_index": segment.index,
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "start_frac": segment.start_s / duration,
        "energy": segment.energy,
        **_song_facts(analysis),
        **_metadata_payload(metadata),
    }
    if segment.section_letter:
        out["section_letter"] = segment.section_letter
    return out


def metadata_from_payload(payload: dict[str, Any]) -> matcher_pb2.SongMetadata:
    extra = payload.get("extra") or {}
    return matcher_pb2.SongMetadata(
        **{name: str(payload.get(name, "")) for name in _METADATA_FIELDS},
        extra={str(k): str(v) for k, v in extra.items()},
    )


def key_from_payload(payload: dict[str, Any]) -> common_pb2.Key | None:
    key = payload.get("key")
    camelot = payload.get("camelot")
    if not isinstance(key, dict) or not camelot:
        return None
    return common_pb2.Key(
        tonic_pitch_class=int(key.get("tonic", 0)),
        mode=common_pb2.Mode.ValueType(int(key.get("mode", 0))),
        camelot=str(camelot),
        name=str(key.get("name", "")),
        confidence=float(key.get("confidence", 0.0)),
    )


def tempo_from_payload(payload: dict[str, Any]) -> float | None:
    value = payload.get("tempo_bpm")
    return float(value) if isinstance(value, int | float) and value > 0 else None
