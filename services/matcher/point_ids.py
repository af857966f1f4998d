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


def song_point_id(song_id: str) -> str:
    """Id of the song-level point (feel vector and song payload)."""
    return str(uuid.uuid5(_NAMESPACE, f"song\x00{song_id}"))


def segment_point_id(song_id: str, generation: str, index: int) -> str:
    """Id of one segment of one version of a song."""
    return str(uuid.uuid5(_NAMESPACE, f"segment\x00{song_id}\x00{generation}\x00{index}"))


def generation_of(analysis: common_pb2.SongAnalysis, metadata: matcher_pb2.SongMetadata) -> str:
    """Content hash of a song version (16 hex digits)."""
    digest = hashlib.sha256()
    digest.update(analysis.SerializeToString(deterministic=True))
    digest.update(b"\x00")
    digest.update(metadata.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]
