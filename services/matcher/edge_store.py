"""The embedded store: Qdrant's own engine in-process (qdrant-edge), persistent on disk.

Durability: every update is appended to the shard's write-ahead log before it returns, so an
acknowledged write survives the process being killed (the log is replayed on load). `flush()`
also writes the segments, which survives power loss.

Search indexes: the edge engine builds HNSW graphs only when `optimize()` runs; the service
calls it in the background after bursts of writes (see `optimize`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from services.matcher.conditions import AllOf, AnyOf, Condition, Match, MatchAny, Not, Range
from services.matcher.store import (
    ENTRY,
    EXIT,
    FEEL,
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PointData,
    StoredRecord,
    VectorDims,
)

HNSW_M = 16
HNSW_EF_CONSTRUCT = 64
# A filtered search whose filter the planner estimates to match fewer vectors than this (in KB
# of vectors: 1,000 KB = 4,000 64-float vectors) scores them all exactly; larger ones walk the
# graph and check the filter on the way. Qdrant's default (10 MB) made a tempo-compatible
# filter (a quarter of a 100k library) scan 25k vectors: 2.5 ms instead of 0.6 ms.
FULL_SCAN_KB = 1_000
# Qdrant also builds a sub-graph for every payload value (or numeric range) holding more than
# FULL_SCAN_KB of vectors; at this threshold that would be dozens (each key, genre, tempo
# band...), multiplying the index build time. None: the filters used here keep too many points
# to need them (the build stayed at ~42 s for 100k segments).
PAYLOAD_M = 0


def to_edge_filter(condition: Condition) -> Any:
    """Translates a neutral condition into qdrant-edge's Filter/FieldCondition types."""
    if isinstance(condition, Match):
        return qe.FieldCondition(condition.key, match=qe.MatchValue(condition.value))
    if isinstance(condition, MatchAny):
        return qe.FieldCondition(condition.key, match=qe.MatchAny(list(condition.values)))
    if isinstance(condition, Range):
        return qe.FieldCondition(
            condition.key, range=qe.RangeFloat(gte=condition.gte, lte=condition.lte)
        )
    if isinstance(condition, AllOf):
        return qe.Filter(must=[to_edge_filter(c) for c in condition.conditions])
    if isinstance(condition, AnyOf):
        return qe.Filter(should=[to_edge_filter(c) for c in condition.conditions])
    if isinstance(condition, Not):
        return qe.Filter(must_not=[to_edge_filter(condition.condition)])
    raise TypeError(f"unknown condition {condition!r}")


def _top_filter(condition: Condition | None) -> Any:
    if condition is None:
        return None
    translated = to_edge_filter(condition)
    if isinstance(translated, qe.Filter):
        return translated
    return qe.Filter(must=[translated])


def _named(vectors: Mapping[str, Sequence[float]]) -> Any:
    # qdrant-edge reads any float sequence (protobuf repeated fields too) without a list copy.
    return vectors if isinstance(vectors, dict) else dict(vectors)


def _with_payload(fields: Sequence[str] | None) -> bool | list[str]:
    if fields is None:
        return True
    return list(fields) if fields else False


def _record(point: Any, score: float = 0.0) -> StoredRecord:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    return StoredRecord(str(point.id), point.payload or {}, vectors, score)


class EdgeStore:
    """SegmentStore on a qdrant-edge shard in a local directory."""

    def __init__(
        self,
        path: str | Path,
        dims: VectorDims,
        *,
        search_threads: int = 1,
        hnsw_ef: int | None = None,
        exact_search: bool = False,
    ) -> None:
        """`hnsw_ef`: graph search breadth (None: the engine's default, ef_construct); exact
        search of small filtered sets is the planner's choice (FULL_SCAN_KB). `exact_search`
        scores every vector: only to measure what the graph search misses (bench)."""
        self._dims = dims
        self._search_params: Any = None
        if exact_search:
            self._search_params = qe.SearchParams(exact=True)
        elif hnsw_ef is not None:
            self._search_params = qe.SearchParams(hnsw_ef=hnsw_ef)
        self._path = Path(path)
        no_graph = qe.HnswIndexConfig(m=0, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=0)
        config = qe.EdgeConfig(
            vectors={
                FEEL: qe.EdgeVectorParams(dims.feel, qe.Distance.Cosine, hnsw_config=no_graph),
                ENTRY: qe.EdgeVectorParams(dims.transition, qe.Distance.Cosine),
                EXIT: qe.EdgeVectorParams(
                    dims.transition, qe.Distance.Cosine, hnsw_config=no_graph
                ),
            },
            hnsw_config=qe.HnswIndexConfig(
                m=HNSW_M,
                ef_construct=HNSW_EF_CONSTRUCT,
                full_scan_threshold=FULL_SCAN_KB,
                payload_m=PAYLOAD_M,
            ),
            # Payload is read for every candidate; keep it in RAM rather than mmapped cold.
            payload_memory=qe.Memory.Cached,
            # One search thread per query: the service runs queries concurrently itself.
            max_search_threads=search_threads,
        )
        # load() checks the stored vector sizes against `config` and fails on a mismatch.
        if (self._path / "segments").is_dir():
            self._shard = qe.EdgeShard.load(str(self._path), config)
        else:
            self._path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self._path), config)
        self._indexed = False
        self._optimize_lock = threading.Lock()

    @property
    def dims(self) -> VectorDims:
        return self._dims

    def ensure_ready(self) -> None:
        if self._indexed:
            return
        existing = set(self._shard.info().payload_schema)
        schema = (
            [(name, qe.PayloadSchemaType.Keyword) for name in KEYWORD_FIELDS]
            + [(name, qe.PayloadSchemaType.Float) for name in FLOAT_FIELDS]
            + [(name, qe.PayloadSchemaType.Integer) for name in INTEGER_FIELDS]
        )
        for name, kind in schema:
            if name not in existing:
                self._shard.update(qe.UpdateOperation.create_field_index(name, kind))
        self._indexed = True

    def upsert(self, points: Sequence[PointData]) -> None:
        if points:
            self._shard.update(
                qe.UpdateOperation.upsert_points(
                    [qe.Point(p.id, _named(p.vectors), p.payload) for p in points]
                )
            )

    def delete(self, where: Condition) -> None:
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(_top_filter(where)))

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        self._shard.update(qe.UpdateOperation.set_payload_by_filter(_top_filter(where), payload))

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            self._shard.update(qe.UpdateOperation.set_payload(list(ids), payload))

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        hits = self._shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(list(vector), using=vector_name),
                filter=_top_filter(where),
                with_payload=_with_payload(with_payload),
                with_vector=list(with_vectors) if with_vectors else False,
                params=self._search_params,
            )
        )
        return [_record(h, h.score) for h in hits]

    def retrieve(
        self,
        ids: Sequence[str],
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        if not ids:
            return []
        points = self._shard.retrieve(
            list(ids),
            with_payload=_with_payload(with_payload),
            with_vector=list(with_vectors) if with_vectors else False,
        )
        return [_record(p) for p in points]

    def scroll(
        self,
        where: Condition | None,
        with_vectors: Sequence[str] = (),
        page_size: int = 1000,
        with_payload: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        offset: Any = None
        while True:
            points, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=page_size if limit is None else min(page_size, limit - len(out)),
                    filter=_top_filter(where),
                    with_payload=_with_payload(with_payload),
                    with_vector=list(with_vectors) if with_vectors else False,
                )
            )
            out.extend(_record(p) for p in points)
            if offset is None or (limit is not None and len(out) >= limit):
                return out

    def count(self, where: Condition | None) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True, filter=_top_filter(where))))

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> bool:
        """Builds search indexes (HNSW, merged segments) for what was written; True if any."""
        with self._optimize_lock:
            return bool(self._shard.optimize())

    def close(self) -> None:
        with self._optimize_lock:  # waits for a background index build to finish
            self._shard.flush()
            self._shard.close()
