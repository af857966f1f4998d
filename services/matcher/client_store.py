"""The server store: a Qdrant server or cluster through qdrant-client over gRPC.

The same class also runs on qdrant-client's local mode (`location=":memory:"` or a `path`),
which speaks the same client API; tests use that. A collection is created on first use with
the configured shard number, replication factor and write consistency, so the matcher can
start before Qdrant is up and becomes ready as soon as it answers.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.matcher.conditions import AllOf, AnyOf, Condition, Match, MatchAny, Not, Range
from services.matcher.errors import StoreUnavailableError
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

T = TypeVar("T")
DEFAULT_GRPC_PORT = 6334

# gRPC backs off between reconnection attempts up to 2 minutes by default, and calls fail at
# once while it waits: a matcher would stay UNAVAILABLE that long after Qdrant came back.
RECONNECT_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}

_UNAVAILABLE_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def to_client_filter(condition: Condition) -> Any:
    """Translates a neutral condition into qdrant-client models."""
    if isinstance(condition, Match):
        return qm.FieldCondition(key=condition.key, match=qm.MatchValue(value=condition.value))
    if isinstance(condition, MatchAny):
        return qm.FieldCondition(key=condition.key, match=qm.MatchAny(any=list(condition.values)))
    if isinstance(condition, Range):
        return qm.FieldCondition(
            key=condition.key, range=qm.Range(gte=condition.gte, lte=condition.lte)
        )
    if isinstance(condition, AllOf):
        return qm.Filter(must=[to_client_filter(c) for c in condition.conditions])
    if isinstance(condition, AnyOf):
        return qm.Filter(should=[to_client_filter(c) for c in condition.conditions])
    if isinstance(condition, Not):
        return qm.Filter(must_not=[to_client_filter(condition.condition)])
    raise TypeError(f"unknown condition {condition!r}")


def _top_filter(condition: Condition | None) -> qm.Filter | None:
    if condition is None:
        return None
    return _as_filter(condition)


def _as_filter(condition: Condition) -> qm.Filter:
    translated = to_client_filter(condition)
    if isinstance(translated, qm.Filter):
        return translated
    return qm.Filter(must=[translated])


def _vectors(raw: Any) -> dict[str, list[float]]:
    if isinstance(raw, dict):
        return {name: list(values) for name, values in raw.items()}
    return {}


def _with_vectors(names: Sequence[str]) -> bool | list[str]:
    return list(names) if names else False


def _with_payload(fields: Sequence[str] | None) -> bool | list[str]:
    if fields is None:
        return True
    return list(fields) if fields else False


class ClientStore:
    """SegmentStore on a Qdrant collection reached through qdrant-client."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        dims: VectorDims,
        *,
        shards: int = 1,
        replication: int = 1,
        write_consistency: int = 1,
        hnsw_ef: int | None = None,
    ) -> None:
        self._client = client
        self._search_params = None if hnsw_ef is None else qm.SearchParams(hnsw_ef=hnsw_ef)
        self._collection = collection
        self._dims = dims
        self._shards = shards
        self._replication = replication
        self._write_consistency = write_consistency
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        url: str,
        collection: str,
        dims: VectorDims,
        *,
        api_key: str = "",
        timeout_s: float = 5.0,
        shards: int = 1,
        replication: int = 1,
        write_consistency: int = 1,
        hnsw_ef: int | None = None,
        grpc_port: int = DEFAULT_GRPC_PORT,
    ) -> ClientStore:
        """A store on a Qdrant server or cluster at `url`, over gRPC. As in qdrant-client, the
        URL's port is Qdrant's REST port (6333) and gRPC goes to the same host on
        `grpc_port`."""
        client = QdrantClient(
            url=url,
            api_key=api_key or None,
            prefer_grpc=True,
            grpc_port=grpc_port,
            timeout=max(1, round(timeout_s)),
            # The server may be down at start-up; compatibility is checked by use instead.
            check_compatibility=False,
            grpc_options=dict(RECONNECT_OPTIONS),  # qdrant-client adds keys to it
        )
        return cls(
            client,
            collection,
            dims,
            shards=shards,
            replication=replication,
            write_consistency=write_consistency,
            hnsw_ef=hnsw_ef,
        )

    @property
    def dims(self) -> VectorDims:
        return self._dims

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code in _UNAVAILABLE_GRPC:
                self._ready = False  # the collection may be gone with a restarted server
                raise StoreUnavailableError(f"Qdrant unreachable: {code}") from e
            raise
        except (ResponseHandlingException, httpx.TransportError, ConnectionError) as e:
            self._ready = False
            raise StoreUnavailableError(f"Qdrant unreachable: {e}") from e
        except UnexpectedResponse as e:
            if e.status_code in (502, 503, 504):
                self._ready = False
                raise StoreUnavailableError(f"Qdrant unavailable: HTTP {e.status_code}") from e
            raise

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                self._call(self._create_if_missing)
                self._ready = True

    def _create_if_missing(self) -> None:
        if not self._client.collection_exists(self._collection):
            no_graph = qm.HnswConfigDiff(m=0)  # only `entry` is searched at segment scale
            self._client.create_collection(
                self._collection,
                vectors_config={
                    FEEL: qm.VectorParams(
                        size=self._dims.feel, distance=qm.Distance.COSINE, hnsw_config=no_graph
                    ),
                    ENTRY: qm.VectorParams(size=self._dims.transition, distance=qm.Distance.COSINE),
                    EXIT: qm.VectorParams(
                        size=self._dims.transition,
                        distance=qm.Distance.COSINE,
                        hnsw_config=no_graph,
                    ),
                },
                shard_number=self._shards,
                replication_factor=self._replication,
                write_consistency_factor=self._write_consistency,
            )
        else:
            self._check_dims()
        schema = (
            [(name, qm.PayloadSchemaType.KEYWORD) for name in KEYWORD_FIELDS]
            + [(name, qm.PayloadSchemaType.FLOAT) for name in FLOAT_FIELDS]
            + [(name, qm.PayloadSchemaType.INTEGER) for name in INTEGER_FIELDS]
        )
        with warnings.catch_warnings():
            # Local mode warns that it ignores payload indexes; a server builds them.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, kind in schema:
                self._client.create_payload_index(self._collection, name, kind, wait=True)

    def _check_dims(self) -> None:
        params = self._client.get_collection(self._collection).config.params.vectors
        if not isinstance(params, dict):
            raise RuntimeError(f"collection {self._collection!r} has no named vectors")
        for name in (FEEL, ENTRY, EXIT):
            size = params[name].size if name in params else None
            if size != self._dims.of(name):
                raise RuntimeError(
                    f"collection {self._collection!r} stores {name} vectors of size {size}, "
                    f"the matcher is configured for {self._dims.of(name)}"
                )

    def upsert(self, points: Sequence[PointData]) -> None:
        if not points:
            return
        structs = [
            qm.PointStruct(
                id=p.id,
                vector={name: list(values) for name, values in p.vectors.items()},
                payload=p.payload,
            )
            for p in points
        ]
        self._call(lambda: self._client.upsert(self._collection, points=structs, wait=True))

    def delete(self, where: Condition) -> None:
        selector = qm.FilterSelector(filter=_as_filter(where))
        self._call(lambda: self._client.delete(self._collection, selector, wait=True))

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        selector = qm.FilterSelector(filter=_as_filter(where))
        self._call(
            lambda: self._client.set_payload(
                self._collection, payload=payload, points=selector, wait=True
            )
        )

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            selector = qm.PointIdsList(points=list(ids))
            self._call(
                lambda: self._client.set_payload(
                    self._collection, payload=payload, points=selector, wait=True
                )
            )

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        response = self._call(
            lambda: self._client.query_points(
                self._collection,
                query=list(vector),
                using=vector_name,
                query_filter=_top_filter(where),
                limit=limit,
                search_params=self._search_params,
                with_payload=_with_payload(with_payload),
                with_vectors=_with_vectors(with_vectors),
            )
        )
        return [
            StoredRecord(str(p.id), p.payload or {}, _vectors(p.vector), p.score)
            for p in response.points
        ]

    def retrieve(
        self,
        ids: Sequence[str],
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        if not ids:
            return []
        records = self._call(
            lambda: self._client.retrieve(
                self._collection, list(ids), with_payload=_with_payload(with_payload),
                with_vectors=_with_vectors(with_vectors),
            )
        )  # fmt: skip
        return [StoredRecord(str(r.id), r.payload or {}, _vectors(r.vector)) for r in records]

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
            records, offset = self._call(
                lambda offset=offset: self._client.scroll(  # type: ignore[misc]
                    self._collection,
                    scroll_filter=_top_filter(where),
                    limit=page_size if limit is None else min(page_size, limit - len(out)),
                    offset=offset,
                    with_payload=_with_payload(with_payload),
                    with_vectors=_with_vectors(with_vectors),
                )
            )
            out.extend(
                StoredRecord(str(r.id), r.payload or {}, _vectors(r.vector)) for r in records
            )
            if offset is None or (limit is not None and len(out) >= limit):
                return out

    def count(self, where: Condition | None) -> int:
        result = self._call(
            lambda: self._client.count(
                self._collection, count_filter=_top_filter(where), exact=True
            )
        )
        return int(result.count)

    def flush(self) -> None:
        """A server persists through its own write-ahead log; nothing to do here."""

    def optimize(self) -> bool:
        return False

    def close(self) -> None:
        self._client.close()
