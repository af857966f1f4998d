"""The server store: a Qdrant server or cluster through qdrant-client over gRPC.

The same class also runs on qdrant-client's local mode (`location=":memory:"` or a `path`),
which speaks the same client API; tests use that. A collection is created on first use with
the configured shard number, replication factor and write consistency, so the matcher can
start before Qdrant is up and becomes ready as soon as it answers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.matcher.errors import StoreUnavailableError
from services.matcher.qdrant_store import Clause, QdrantStore, Selection, record
from services.matcher.schema import ValueType
from services.matcher.store import VECTOR_NAMES, PointData, StoredRecord, VectorDims

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

_INDEX_TYPES = {
    ValueType.KEYWORD: qm.PayloadSchemaType.KEYWORD,
    ValueType.FLOAT: qm.PayloadSchemaType.FLOAT,
    ValueType.INTEGER: qm.PayloadSchemaType.INTEGER,
}
_VALUE_TYPES = {engine: value for value, engine in _INDEX_TYPES.items()}


class ClientStore(QdrantStore):
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
        super().__init__(dims)
        self._client = client
        self._search_params = None if hnsw_ef is None else qm.SearchParams(hnsw_ef=hnsw_ef)
        self._collection = collection
        self._shards = shards
        self._replication = replication
        self._write_consistency = write_consistency

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

    def _match(self, key: str, value: str | int) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))

    def _match_any(self, key: str, values: list[str]) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchAny(any=values))

    def _range(self, key: str, gte: float | None, lte: float | None) -> Any:
        return qm.FieldCondition(key=key, range=qm.Range(gte=gte, lte=lte))

    def _filter(self, clause: Clause, parts: list[Any]) -> Any:
        parts_by_clause: dict[str, Any] = {clause: parts}
        return qm.Filter(**parts_by_clause)

    def _prepare(self) -> None:
        self._call(self._create_if_missing)

    def _create_if_missing(self) -> None:
        if not self._client.collection_exists(self._collection):
            no_graph = qm.HnswConfigDiff(m=0)
            self._client.create_collection(
                self._collection,
                vectors_config={
                    v.name: qm.VectorParams(
                        size=v.size,
                        distance=qm.Distance.COSINE,
                        hnsw_config=None if v.graph else no_graph,
                    )
                    for v in self.vector_layout()
                },
                shard_number=self._shards,
                replication_factor=self._replication,
                write_consistency_factor=self._write_consistency,
            )
        else:
            self._check_dims()
        with warnings.catch_warnings():
            # Local mode warns that it ignores payload indexes; a server builds them.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, kind in self.missing_indexes(self.payload_indexes()):
                self._client.create_payload_index(
                    self._collection, name, _INDEX_TYPES[kind], wait=True
                )

    def payload_indexes(self) -> dict[str, ValueType | None]:
        info = self._call(lambda: self._client.get_collection(self._collection))
        return {
            name: _VALUE_TYPES.get(index.data_type) for name, index in info.payload_schema.items()
        }

    def _check_dims(self) -> None:
        """Fails unless the collection's vectors have the configured sizes."""
        params = self._client.get_collection(self._collection).config.params.vectors
        if not isinstance(params, dict):
            raise RuntimeError(f"collection {self._collection!r} has no named vectors")
        for name in VECTOR_NAMES:
            size = params[name].size if name in params else None
            if size != self._dims.of(name):
                raise RuntimeError(
                    f"collection {self._collection!r} stores {name} vectors of size {size}, "
                    f"the matcher is configured for {self._dims.of(name)}"
                )

    def _upsert(self, points: Sequence[PointData]) -> None:
        structs = [
            qm.PointStruct(
                id=p.id,
                vector={name: list(values) for name, values in p.vectors.items()},
                payload=p.payload,
            )
            for p in points
        ]
        self._call(lambda: self._client.upsert(self._collection, points=structs, wait=True))

    def _delete(self, where: Any) -> None:
        selector = qm.FilterSelector(filter=where)
        self._call(lambda: self._client.delete(self._collection, selector, wait=True))

    def _set_payload(self, where: Any, payload: dict[str, Any]) -> None:
        self._set_payload_on(qm.FilterSelector(filter=where), payload)

    def _set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._set_payload_on(qm.PointIdsList(points=list(ids)), payload)

    def _set_payload_on(
        self, selector: qm.FilterSelector | qm.PointIdsList, payload: dict[str, Any]
    ) -> None:
        self._call(
            lambda: self._client.set_payload(
                self._collection, payload=payload, points=selector, wait=True
            )
        )

    def _search(
        self, vector_name: str, vector: list[float], where: Any, limit: int, select: Selection
    ) -> list[StoredRecord]:
        response = self._call(
            lambda: self._client.query_points(
                self._collection,
                query=vector,
                using=vector_name,
                query_filter=where,
                limit=limit,
                search_params=self._search_params,
                with_payload=select.payload,
                with_vectors=select.vectors,
            )
        )
        return [record(p.id, p.payload, p.vector, p.score) for p in response.points]

    def _retrieve(self, ids: Sequence[str], select: Selection) -> list[StoredRecord]:
        records = self._call(
            lambda: self._client.retrieve(
                self._collection, list(ids), with_payload=select.payload,
                with_vectors=select.vectors,
            )
        )  # fmt: skip
        return [record(r.id, r.payload, r.vector) for r in records]

    def _scroll_page(
        self, where: Any, limit: int, offset: Any, select: Selection
    ) -> tuple[list[StoredRecord], Any]:
        records, next_offset = self._call(
            lambda: self._client.scroll(
                self._collection,
                scroll_filter=where,
                limit=limit,
                offset=offset,
                with_payload=select.payload,
                with_vectors=select.vectors,
            )
        )
        return [record(r.id, r.payload, r.vector) for r in records], next_offset

    def _count(self, where: Any) -> int:
        result = self._call(
            lambda: self._client.count(self._collection, count_filter=where, exact=True)
        )
        return int(result.count)

    def flush(self) -> None:
        """A server persists through its own write-ahead log; nothing to do here."""

    def optimize(self) -> bool:
        return False

    def close(self) -> None:
        self._client.close()
