"""A SegmentStore wrapper that records call latency and whether Qdrant is reachable."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from segue.metrics import MATCHER_QDRANT_UP, MATCHER_STORE_DURATION
from services.matcher.conditions import Condition
from services.matcher.errors import StoreUnavailableError
from services.matcher.store import PointData, SegmentStore, StoredRecord, VectorDims

T = TypeVar("T")


class InstrumentedStore:
    """Delegates to `inner`, observing segue_matcher_store_duration_seconds{operation}."""

    def __init__(self, inner: SegmentStore) -> None:
        self.inner = inner
        self._timers = {
            name: MATCHER_STORE_DURATION.labels(name)
            for name in (
                "ensure_ready", "upsert", "delete", "set_payload", "search", "retrieve",
                "scroll", "count", "flush", "optimize",
            )
        }  # fmt: skip

    def _timed(self, operation: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            result = fn()
        except StoreUnavailableError:
            MATCHER_QDRANT_UP.set(0)
            raise
        self._timers[operation].observe(time.perf_counter() - started)
        MATCHER_QDRANT_UP.set(1)
        return result

    @property
    def dims(self) -> VectorDims:
        return self.inner.dims

    def ensure_ready(self) -> None:
        self._timed("ensure_ready", self.inner.ensure_ready)

    def upsert(self, points: Sequence[PointData]) -> None:
        self._timed("upsert", lambda: self.inner.upsert(points))

    def delete(self, where: Condition) -> None:
        self._timed("delete", lambda: self.inner.delete(where))

    def set_payload(self, where: Condition, payload: dict[str, Any]) -> None:
        self._timed("set_payload", lambda: self.inner.set_payload(where, payload))

    def set_payload_by_ids(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._timed("set_payload", lambda: self.inner.set_payload_by_ids(ids, payload))

    def search(
        self,
        vector_name: str,
        vector: Sequence[float],
        where: Condition | None,
        limit: int,
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        return self._timed(
            "search",
            lambda: self.inner.search(
                vector_name, vector, where, limit, with_vectors, with_payload
            ),
        )

    def retrieve(
        self,
        ids: Sequence[str],
        with_vectors: Sequence[str] = (),
        with_payload: Sequence[str] | None = None,
    ) -> list[StoredRecord]:
        return self._timed("retrieve", lambda: self.inner.retrieve(ids, with_vectors, with_payload))

    def scroll(
        self,
        where: Condition | None,
        with_vectors: Sequence[str] = (),
        page_size: int = 1000,
        with_payload: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredRecord]:
        return self._timed(
            "scroll",
            lambda: self.inner.scroll(where, with_vectors, page_size, with_payload, limit),
        )

    def count(self, where: Condition | None) -> int:
        return self._timed("count", lambda: self.inner.count(where))

    def flush(self) -> None:
        self._timed("flush", self.inner.flush)

    def optimize(self) -> bool:
        return self._timed("optimize", self.inner.optimize)

    def close(self) -> None:
        self.inner.close()
