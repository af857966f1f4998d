"""What both Qdrant stores share: the SegmentStore methods, condition translation, what to
read back, paging, the vector layout and the payload indexes to create.

The embedded engine (qdrant-edge) and qdrant-client name the same Qdrant concepts with
different Python types. A store subclasses `QdrantStore` and supplies only its engine's calls:
four constructors for filter parts (`_match`, `_match_any`, `_range`, `_filter`) and one
method per engine operation (`_prepare`, `_upsert`, `_search`, `_scroll_page`...), each given
engine-ready arguments.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.matcher import schema
from services.matcher.conditions import AllOf, AnyOf, Condition, Match, MatchAny, Not, Range
from services.matcher.store import (
    GRAPH_INDEXED_VECTORS,
    VECTOR_NAMES,
    PointData,
    StoredRecord,
    VectorDims,
)

# How a filter combines its parts: all of them, any of them, none of them.
Clause = Literal["must", "should", "must_not"]


@dataclass(frozen=True)
class Selection:
    """What to read back with each point, as both engines take it: False for nothing, True
    for the whole payload, or a list of names."""

    vectors: bool | list[str]
    payload: bool | list[str]

    @classmethod
    def of(cls, with_vectors: Sequence[str], with_payload: Sequence[str] | None) -> Selection:
        """`with_payload`: None for the whole payload, empty for none."""
        payload = True if with_payload is None else (list(with_payload) or False)
        return cls(list(with_vectors) or False, payload)


@dataclass(frozen=True)
class VectorLayout:
    """One named vector of the collection: its length and whether it gets an HNSW graph."""

    name: str
    size: int
    graph: bool


def record(point_id: Any, payload: Any, vectors: Any, score: float = 0.0) -> StoredRecord:
    """A point as the engines return it (id, payload, named vectors or None), neutrally."""
    named = {str(k): list(v) for k, v in vectors.items()} if isinstance(vectors, dict) else {}
    return StoredRecord(str(point_id), payload or {}, named, score)


class QdrantStore(ABC):
    """A SegmentStore on one Qdrant engine; subclasses supply the engine's calls."""

    def __init__(self, dims: VectorDims) -> None:
        self._dims = dims
        self._ready = False
        self._ready_lock = threading.Lock()

    @property
    def dims(self) -> VectorDims:
        return self._dims

    def vector_layout(self) -> list[VectorLayout]:
        """The named vectors a new collection declares."""
        return [
            VectorLayout(name, self._dims.of(name), name in GRAPH_INDEXED_VECTORS)
            for name in VECTOR_NAMES
        ]

    @staticmethod
    def missing_indexes(existing: Collection[str]) -> list[tuple[str, schema.ValueType]]:
        """The schema's payload indexes not among `existing` (field names)."""
        return [(name, kind) for name, kind in schema.PAYLOAD_INDEXES if name not in existing]

    # Condition translation.

    def engine_filter(self, condition: Condition | None) -> Any:
        """The engine's top-level filter for a condition (None: match everything)."""
        if condition is None:
            return None
        if isinstance(condition, AllOf | AnyOf | Not):
            return self._translate(condition)
        return self._filter("must", [self._translate(condition)])

    def _translate(self, condition: Condition) -> Any:
        if isinstance(condition, Match):
            return self._match(condition.key, condition.value)
        if isinstance(condition, MatchAny):
            return self._match_any(condition.key, list(condition.values))
        if isinstance(condition, Range):
            return self._range(condition.key, condition.gte, condition.lte)
        if isinstance(condition, AllOf):
            return self._filter("must", [self._translate(c) for c in condition.conditions])
        if isinstance(condition, AnyOf):
            return self._filter("should", [self._translate(c) for c in condition.conditions])
        if isinstance(condition, Not):
            return self._filter("must_not", [self._translate(condition.condition)])
        raise TypeError(f"unknown condition {condition!r}")

    # SegmentStore, in terms of the engine calls below.

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                self._prepare()
                self._ready = True

    def upsert(self, points: Sequence[PointData]) -> None:
        if points:
            self._upsert(points)

    def delete(self, where: Condition) -> None:
        self._delete(self.engine_filter(where))

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        self._set_payload(self.engine_filter(where), payload)

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            self._set_payload_by_ids(ids, payload)

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        select = Selection.of(with_vectors, with_payload)
        return self._search(vector_name, list(vector), self.engine_filter(where), limit, select)

    def retrieve(
        self,
        ids: Sequence[str],
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        if not ids:
            return []
        return self._retrieve(ids, Selection.of(with_vectors, with_payload))

    def scroll(
        self,
        where: Condition | None,
        with_vectors: Sequence[str] = (),
        page_size: int = 1000,
        with_payload: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        engine_filter = self.engine_filter(where)
        select = Selection.of(with_vectors, with_payload)
        out: list[StoredRecord] = []
        offset: Any = None
        while True:
            size = page_size if limit is None else min(page_size, limit - len(out))
            records, offset = self._scroll_page(engine_filter, size, offset, select)
            out.extend(records)
            if offset is None or (limit is not None and len(out) >= limit):
                return out

    def count(self, where: Condition | None) -> int:
        return self._count(self.engine_filter(where))

    # The engine's filter parts.

    @abstractmethod
    def _match(self, key: str, value: str | int) -> Any:
        """A field equals a value."""

    @abstractmethod
    def _match_any(self, key: str, values: list[str]) -> Any:
        """A field equals one of the values."""

    @abstractmethod
    def _range(self, key: str, gte: float | None, lte: float | None) -> Any:
        """A numeric field within inclusive bounds; None bounds are open."""

    @abstractmethod
    def _filter(self, clause: Clause, parts: list[Any]) -> Any:
        """A filter combining translated parts as `clause` says."""

    # The engine's operations, given engine filters and selections.

    @abstractmethod
    def _prepare(self) -> None:
        """Creates the collection and the missing payload indexes; checks an existing one."""

    @abstractmethod
    def _upsert(self, points: Sequence[PointData]) -> None: ...

    @abstractmethod
    def _delete(self, where: Any) -> None: ...

    @abstractmethod
    def _set_payload(self, where: Any, payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def _set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def _search(
        self, vector_name: str, vector: list[float], where: Any, limit: int, select: Selection
    ) -> list[StoredRecord]: ...

    @abstractmethod
    def _retrieve(self, ids: Sequence[str], select: Selection) -> list[StoredRecord]: ...

    @abstractmethod
    def _scroll_page(
        self, where: Any, limit: int, offset: Any, select: Selection
    ) -> tuple[list[StoredRecord], Any]:
        """One page from `offset` (None: the start), and the next page's offset (None: no
        more)."""

    @abstractmethod
    def _count(self, where: Any) -> int: ...

    @abstractmethod
    def payload_indexes(self) -> dict[str, schema.ValueType | None]:
        """The payload indexes the engine has, by field, with their type (None: a type the
        schema never declares)."""

    @abstractmethod
    def flush(self) -> None:
        """Persists everything written so far to the engine's segment files."""

    @abstractmethod
    def optimize(self) -> bool:
        """Builds search indexes for recent writes where the engine leaves that to its owner;
        True if anything changed."""

    @abstractmethod
    def close(self) -> None:
        """Releases the engine; the store cannot be used afterwards."""
