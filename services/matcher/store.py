"""The storage interface the matcher runs on, whichever Qdrant deployment is behind it.

Data model (one collection, or one embedded shard):
- one *song point* per song: named vector `feel`; payload with `kind="song"`, the song's
  metadata, tempo, key, duration, model version, its current `generation`, the list of its
  segments' times and energies, and the rest of its SongAnalysis (beats, sections, cues);
- one *segment point* per segment of each stored version: named vectors `entry` and `exit`;
  payload with the song id, its `generation`, the segment's index, times, energy and section
  letter, and a `state` of "pending" (being written) or "live" (served); committing a version
  adds `kind="segment"` and a copy of the song fields that filters use (metadata, tempo,
  camelot, model version) in one write per song (see library). Display-only song fields (key
  details, uri, duration) live on the song point alone: every payload value costs time on
  each write and each read. Every payload field is declared in `schema`.

Only `entry` is searched over segments (with an exit vector as the query), so only `entry` gets
an HNSW graph; `feel` is searched over song points (the only points that have it), and `exit`
is only read back. (Stores written before 2026-11-21 also gave segments a `feel` copy; it is
never read.)

Implementations raise StoreUnavailableError when the engine cannot be reached and otherwise
let exceptions through (they are faults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.matcher.conditions import Condition

FEEL = "feel"
ENTRY = "entry"
EXIT = "exit"

# Named vectors in the order the collection declares them. Only `entry` is searched over
# segments, so only it gets an HNSW graph (see the module docstring).
VECTOR_NAMES = (FEEL, ENTRY, EXIT)
GRAPH_INDEXED_VECTORS = frozenset({ENTRY})


@dataclass(frozen=True)
class VectorDims:
    feel: int
    transition: int

    def of(self, name: str) -> int:
        return self.feel if name == FEEL else self.transition


@dataclass
class PointData:
    """A point to write: id (UUID string), named vectors and payload. Vectors may be any
    float sequence (lists, protobuf repeated fields): each store converts what it needs."""

    id: str
    vectors: Mapping[str, Sequence[float]]
    payload: dict[str, Any]


@dataclass
class StoredRecord:
    """A point read back; `score` is the similarity for search results, else 0."""

    id: str
    payload: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)
    score: float = 0.0


class SegmentStore(Protocol):
    """Qdrant operations the matcher needs, in its own neutral types."""

    @property
    def dims(self) -> VectorDims:
        """Vector lengths of the collection."""
        ...

    def ensure_ready(self) -> None:
        """Creates the collection and payload indexes when missing; cheap once done."""
        ...

    def upsert(self, points: Sequence[PointData]) -> None:
        """Writes points (one atomic write-ahead-log entry per call where supported)."""
        ...

    def delete(self, where: Condition) -> None:
        """Deletes every point matching `where`."""
        ...

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        """Sets the given payload keys on every point matching `where`."""
        ...

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Sets the given payload keys on the given (existing) points, in one write."""
        ...

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        """Nearest points by cosine on one named vector, best first; `with_payload` names the
        payload fields to return (None: all, empty: none, which is the fastest). Only points
        having the vector are searched."""
        ...

    def retrieve(
        self,
        ids: Sequence[str],
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        """Points by id; missing ids are skipped (`with_payload` as in `search`)."""
        ...

    def scroll(
        self,
        where: Condition | None,
        with_vectors: Sequence[str] = (),
        page_size: int = 1000,
        with_payload: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        """Every point matching `where` (the first `limit` of them), in id order
        (`with_payload` as in `search`)."""
        ...

    def count(self, where: Condition | None) -> int:
        """Exact number of points matching `where`."""
        ...

    def flush(self) -> None:
        """Persists everything written so far to the engine's segment files."""
        ...

    def optimize(self) -> bool:
        """Builds search indexes for recent writes where the engine leaves that to its owner;
        True if anything changed. A server optimises by itself and returns False."""
        ...

    def close(self) -> None:
        """Releases the engine; the store cannot be used afterwards."""
        ...
