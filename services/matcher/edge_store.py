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

from services.matcher.qdrant_store import Clause, QdrantStore, Selection, record
from services.matcher.schema import ValueType
from services.matcher.store import PointData, StoredRecord, VectorDims

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

_INDEX_TYPES = {
    ValueType.KEYWORD: qe.PayloadSchemaType.Keyword,
    ValueType.FLOAT: qe.PayloadSchemaType.Float,
    ValueType.INTEGER: qe.PayloadSchemaType.Integer,
}
_VALUE_TYPES = {engine: value for value, engine in _INDEX_TYPES.items()}


def _named(vectors: Mapping[str, Sequence[float]]) -> Any:
    # qdrant-edge reads any float sequence (protobuf repeated fields too) without a list copy.
    return vectors if isinstance(vectors, dict) else dict(vectors)


class EdgeStore(QdrantStore):
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
        super().__init__(dims)
        self._search_params: Any = None
        if exact_search:
            self._search_params = qe.SearchParams(exact=True)
        elif hnsw_ef is not None:
            self._search_params = qe.SearchParams(hnsw_ef=hnsw_ef)
        self._path = Path(path)
        no_graph = qe.HnswIndexConfig(m=0, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=0)
        config = qe.EdgeConfig(
            vectors={
                v.name: qe.EdgeVectorParams(
                    v.size, qe.Distance.Cosine, hnsw_config=None if v.graph else no_graph
                )
                for v in self.vector_layout()
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
        self._optimize_lock = threading.Lock()

    def _match(self, key: str, value: str | int) -> Any:
        return qe.FieldCondition(key, match=qe.MatchValue(value))

    def _match_any(self, key: str, values: list[str]) -> Any:
        return qe.FieldCondition(key, match=qe.MatchAny(values))

    def _range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lte=lte))

    def _filter(self, clause: Clause, parts: list[Any]) -> Any:
        parts_by_clause: dict[str, Any] = {clause: parts}
        return qe.Filter(**parts_by_clause)

    def _prepare(self) -> None:
        for name, kind in self.missing_indexes(self.payload_indexes()):
            self._shard.update(qe.UpdateOperation.create_field_index(name, _INDEX_TYPES[kind]))

    def payload_indexes(self) -> dict[str, ValueType | None]:
        schema = self._shard.info().payload_schema
        return {name: _VALUE_TYPES.get(info.data_type) for name, info in schema.items()}

    def _upsert(self, points: Sequence[PointData]) -> None:
        self._shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, _named(p.vectors), p.payload) for p in points]
            )
        )

    def _delete(self, where: Any) -> None:
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(where))

    def _set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self._shard.update(qe.UpdateOperation.set_payload_by_filter(where, payload))

    def _set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._shard.update(qe.UpdateOperation.set_payload(list(ids), payload))

    def _search(
        self, vector_name: str, vector: list[float], where: Any, limit: int, select: Selection
    ) -> list[StoredRecord]:
        hits = self._shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(vector, using=vector_name),
                filter=where,
                with_payload=select.payload,
                with_vector=select.vectors,
                params=self._search_params,
            )
        )
        return [record(h.id, h.payload, h.vector, h.score) for h in hits]

    def _retrieve(self, ids: Sequence[str], select: Selection) -> list[StoredRecord]:
        points = self._shard.retrieve(
            list(ids), with_payload=select.payload, with_vector=select.vectors
        )
        return [record(p.id, p.payload, p.vector) for p in points]

    def _scroll_page(
        self, where: Any, limit: int, offset: Any, select: Selection
    ) -> tuple[list[StoredRecord], Any]:
        points, offset = self._shard.scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=limit,
                filter=where,
                with_payload=select.payload,
                with_vector=select.vectors,
            )
        )
        return [record(p.id, p.payload, p.vector) for p in points], offset

    def _count(self, where: Any) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True, filter=where)))

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
