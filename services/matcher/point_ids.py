"""Deterministic point ids and song generations.

A song's generation is a hash of everything stored for it, so upserting the same analysis and
metadata twice writes the same points (idempotent), while a changed song gets new segment ids
and can be written beside the old version before the old one is removed.
"""

from __future__ import annotations

import hashlib
import uuid

from segue.v1 import common_pb2, matcher_pb2

# Fixed namespace: ids must never change between releases, or re-indexing would duplicate.
_NAMESPACE = uuid.UUID("6f1d2c59-3a7e-5b0e-9d43-5e6775650a01")
_SONG_PREFIX = hashlib.sha1(_NAMESPACE.bytes + b"song\x00", usedforsecurity=False)


def song_point_id(song_id: str) -> str:
    """Id of the song-level point (feel vector and song payload)."""
    digest = _SONG_PREFIX.copy()
    digest.update(song_id.encode())
    return _uuid5_text(digest.digest())


def _uuid5_text(sha1: bytes) -> str:
    """uuid.uuid5's string from the SHA-1 of namespace + name, without building UUID objects
    (a third of the cost: ids are computed on every query)."""
    raw = bytearray(sha1[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def segment_point_id(song_id: str, generation: str, index: int) -> str:
    """Id of one segment of one version of a song."""
    return str(uuid.uuid5(_NAMESPACE, f"segment\x00{song_id}\x00{generation}\x00{index}"))


def segment_point_ids(song_id: str, generation: str, count: int) -> list[str]:
    """`segment_point_id` of segments 0..count-1, hashing the shared prefix once."""
    prefix = hashlib.sha1(_NAMESPACE.bytes, usedforsecurity=False)
    prefix.update(f"segment\x00{song_id}\x00{generation}\x00".encode())
    out: list[str] = []
    for index in range(count):
        digest = prefix.copy()
        digest.update(str(index).encode())
        out.append(_uuid5_text(digest.digest()))
    return out


def generation_of(analysis: common_pb2.SongAnalysis, metadata: matcher_pb2.SongMetadata) -> str:
    """Content hash of a song version (16 hex digits)."""
    digest = hashlib.sha256()
    digest.update(analysis.SerializeToString(deterministic=True))
    digest.update(b"\x00")
    digest.update(metadata.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]
