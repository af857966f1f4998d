"""Payloads of song and segment points, and their conversion back to protobuf messages.

Empty metadata fields are left out of the payload rather than stored as "": a filter that
excludes an artist then keeps songs with no artist, and `conditions` on absent fields fail.

Segment payloads carry only what filters and scoring read: every key costs microseconds per
point when written (qdrant-edge converts each value from Python) and when read back. Display
fields (uri, key details, duration, model name) are read from the song point.
"""

from __future__ import annotations

from typing import Any

from segue.v1 import common_pb2, matcher_pb2

SONG = "song"
SEGMENT = "segment"
PENDING = "pending"
LIVE = "live"

_METADATA_FIELDS = ("title", "artist", "album", "genre", "uri")
# Song fields that filters use, copied onto segments (see filters.KEYWORD_FIELDS).
_SEGMENT_SONG_FIELDS = (
    "model_version", "tempo_bpm", "camelot", "title", "artist", "album", "genre", "extra",
)  # fmt: skip


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


def pending_segment_payloads(
    analysis: common_pb2.SongAnalysis, generation: str
) -> list[dict[str, Any]]:
    """Payloads of a song version's segment points as first written: their own fields, the
    song id and generation, and `state="pending"`; `committed_segment_fields` completes them.
    (Writing the song-level fields once per song instead of once per segment halves the
    payload values qdrant-edge converts, its largest cost when indexing.)"""
    song_id = analysis.song_id
    duration = analysis.duration_s
    out = []
    for segment in analysis.segments:
        start = segment.start_s
        payload = {
            "song_id": song_id,
            "generation": generation,
            "state": PENDING,
            "segment_index": segment.index,
            "start_s": start,
            "end_s": segment.end_s,
            "start_frac": start / (duration if duration > 0 else max(segment.end_s, 1e-9)),
            "energy": segment.energy,
        }
        if segment.section_letter:
            payload["section_letter"] = segment.section_letter
        out.append(payload)
    return out


def committed_segment_fields(song: dict[str, Any]) -> dict[str, Any]:
    """What committing sets on every segment of a version, derived from its song point's
    payload (so crash recovery can derive it too): `kind`, `state="live"` and the song fields
    filters use (metadata, tempo, camelot, model version)."""
    out: dict[str, Any] = {"kind": SEGMENT, "state": LIVE}
    for name in _SEGMENT_SONG_FIELDS:
        if name in song:
            out[name] = song[name]
    return out


def segment_payload(
    analysis: common_pb2.SongAnalysis,
    metadata: matcher_pb2.SongMetadata,
    generation: str,
    segment: common_pb2.Segment,
    *,
    live: bool,
) -> dict[str, Any]:
    """Payload of one segment point: pending as first written, or live once committed."""
    single = common_pb2.SongAnalysis()
    single.CopyFrom(analysis)
    del single.segments[:]
    single.segments.append(segment)
    out = pending_segment_payloads(single, generation)[0]
    if live:
        out.update(committed_segment_fields(song_payload(analysis, metadata, generation)))
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
