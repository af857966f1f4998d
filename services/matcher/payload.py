"""Payloads of song and segment points, and their conversion back to protobuf messages.

Empty metadata fields are left out of the payload rather than stored as "": a filter that
excludes an artist then keeps songs with no artist, and `conditions` on absent fields fail.

Segment payloads carry only what filters and scoring read: every key costs microseconds per
point when written (qdrant-edge converts each value from Python) and when read back. Display
fields (uri, key details, duration, model name) are read from the song point.

The song point also keeps the whole SongAnalysis given to UpsertSong, stored once: its feel
and segment vectors are the points' vectors, its segments' times, energies and letters the
`segments` list, and everything else (beats, sections, cue points, tempo, key, loudness...)
one serialized protobuf (`analysis`), which nothing filters on. Songs stored before that field
existed lack it; their analysis is rebuilt from the other fields. Every field is declared in
`schema`.
"""

from __future__ import annotations

import base64
from typing import Any

from segue.v1 import common_pb2, matcher_pb2
from services.matcher import schema

SONG = "song"
SEGMENT = "segment"
PENDING = "pending"
LIVE = "live"
ANALYSIS = "analysis"  # the song point's field holding the rest of its SongAnalysis

# Results that show their song's metadata, tempo and key.
ShownResult = matcher_pb2.Candidate | matcher_pb2.PlaylistStep | matcher_pb2.StoredSong


def _metadata_payload(metadata: matcher_pb2.SongMetadata) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in schema.METADATA_FIELDS:
        value = getattr(metadata, name)
        if value:  # empty fields are left out (see the module docstring)
            out[name] = dict(value) if _is_map(name) else value
    return out


def _is_map(name: str) -> bool:
    return schema.BY_NAME[name].type is schema.ValueType.KEYWORD_MAP


def _encoded_analysis(analysis: common_pb2.SongAnalysis) -> str:
    """The analysis without its feel and segments (stored apart), as base64 of its protobuf
    encoding."""
    rest = common_pb2.SongAnalysis()
    rest.CopyFrom(analysis)
    rest.ClearField("feel")
    rest.ClearField("segments")
    return base64.b64encode(rest.SerializeToString(deterministic=True)).decode("ascii")


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
        ANALYSIS: _encoded_analysis(analysis),
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
    for name in schema.COPIED_TO_SEGMENTS:
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
    out = matcher_pb2.SongMetadata()
    for name in schema.METADATA_FIELDS:
        value = payload.get(name)
        if not value:
            continue
        if _is_map(name):
            getattr(out, name).update({str(k): str(v) for k, v in value.items()})
        else:
            setattr(out, name, str(value))
    return out


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


def show_song(payload: dict[str, Any], out: ShownResult) -> None:
    """Fills a result's metadata, tempo and key from its song's payload (the fields
    `schema.SHOWN_IN_RESULTS` names)."""
    out.metadata.CopyFrom(metadata_from_payload(payload))
    out.tempo_bpm = tempo_from_payload(payload) or 0.0
    key = key_from_payload(payload)
    if key is not None:
        out.key.CopyFrom(key)


def stores_whole_analysis(payload: dict[str, Any]) -> bool:
    """The song point keeps the whole analysis (songs stored before it was kept do not)."""
    return ANALYSIS in payload


def analysis_from_payload(payload: dict[str, Any]) -> common_pb2.SongAnalysis:
    """A song's stored analysis without vectors: the one given to UpsertSong or, for a song
    stored before whole analyses were kept, what its payload knows (ids, model, duration,
    tempo, key, loudness and segments)."""
    if stores_whole_analysis(payload):
        out = common_pb2.SongAnalysis.FromString(base64.b64decode(payload[ANALYSIS]))
    else:
        out = _analysis_from_fields(payload)
    for index, (start, end, energy, letter) in enumerate(payload.get("segments", [])):
        out.segments.add(
            index=index, start_s=start, end_s=end, energy=energy, section_letter=letter
        )
    return out


def _analysis_from_fields(payload: dict[str, Any]) -> common_pb2.SongAnalysis:
    out = common_pb2.SongAnalysis(
        song_id=str(payload["song_id"]),
        model_name=str(payload.get("model_name", "")),
        model_version=str(payload.get("model_version", "")),
        duration_s=float(payload.get("duration_s", 0.0)),
        loudness_lufs=float(payload.get("loudness_lufs", 0.0)),
    )
    tempo = tempo_from_payload(payload)
    if tempo is not None:
        out.tempo.bpm = tempo
    key = key_from_payload(payload)
    if key is not None:
        out.key.CopyFrom(key)
    return out
