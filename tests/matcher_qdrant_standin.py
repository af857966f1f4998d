"""A stand-in Qdrant server for the fault tests: Qdrant's gRPC API, from qdrant-client's own
service definitions, served on a loopback port over qdrant-client's local-mode engine.

No Qdrant server can be installed here (none ships on PyPI, apt or npm; qdrant-client's local
mode runs in-process), so the matcher's server path is tested against this: the real client
code and wire protocol, the real connection errors while the port is closed, the real
reconnection once it listens again. Only the calls the matcher makes are implemented; the
engine behind them is local mode's, not a Qdrant server's. Local mode keeps no payload indexes,
so the stand-in keeps the ones asked for itself and reports them in the collection info, as a
server does. Stopping and starting it again keeps the data, like a server restarting on its
storage.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from qdrant_client import QdrantClient
from qdrant_client import grpc as qg
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import (
    collections_service_pb2_grpc,
    points_service_pb2_grpc,
    qdrant_pb2_grpc,
)

_DONE = qg.UpdateResult(operation_id=0, status=qg.UpdateStatus.Completed)


class _Root(qdrant_pb2_grpc.QdrantServicer):
    def HealthCheck(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
        return qg.HealthCheckReply(title="segue test stand-in", version="0.0.0")


class PayloadIndexes:
    """Payload indexes by collection (field name -> type name, as in PayloadSchemaType:
    "Keyword", "Float"...), and every CreateFieldIndex request in order (to see which were
    asked for again)."""

    def __init__(self) -> None:
        self.by_collection: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []

    def create(self, request: Any) -> None:
        type_name = qg.FieldType.Name(request.field_type).removeprefix("FieldType")
        self.by_collection.setdefault(request.collection_name, {})[request.field_name] = type_name
        self.requests.append((request.field_name, type_name))


class _Collections(collections_service_pb2_grpc.CollectionsServicer):
    def __init__(self, engine: QdrantClient, indexes: PayloadIndexes) -> None:
        self.engine = engine
        self.indexes = indexes

    def CollectionExists(self, request: Any, context: Any) -> Any:  # noqa: N802
        exists = self.engine.collection_exists(request.collection_name)
        return qg.CollectionExistsResponse(result=qg.CollectionExists(exists=exists), time=0)

    def Create(self, request: Any, context: Any) -> Any:  # noqa: N802
        vectors = GrpcToRest.convert_vectors_config(request.vectors_config)
        done = self.engine.create_collection(request.collection_name, vectors_config=vectors)
        return qg.CollectionOperationResponse(result=done, time=0)

    def Get(self, request: Any, context: Any) -> Any:  # noqa: N802
        info = RestToGrpc.convert_collection_info(
            self.engine.get_collection(request.collection_name)
        )
        indexes = self.indexes.by_collection.get(request.collection_name, {})
        for name, type_name in indexes.items():
            data_type = qg.PayloadSchemaType.Value(type_name)
            info.payload_schema[name].CopyFrom(qg.PayloadSchemaInfo(data_type=data_type))
        return qg.GetCollectionInfoResponse(result=info, time=0)


class _Points(points_service_pb2_grpc.PointsServicer):
    def __init__(self, engine: QdrantClient, indexes: PayloadIndexes) -> None:
        self.engine = engine
        self.indexes = indexes

    @staticmethod
    def _done() -> Any:
        return qg.PointsOperationResponse(result=_DONE, time=0)

    @staticmethod
    def _filter(request: Any, name: str) -> Any:
        return GrpcToRest.convert_filter(getattr(request, name)) if request.HasField(name) else None

    def CreateFieldIndex(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.indexes.create(request)  # local mode has no payload indexes: kept here
        return self._done()

    def Upsert(self, request: Any, context: Any) -> Any:  # noqa: N802
        points = [GrpcToRest.convert_point_struct(p) for p in request.points]
        self.engine.upsert(request.collection_name, points)
        return self._done()

    def Delete(self, request: Any, context: Any) -> Any:  # noqa: N802
        selector = GrpcToRest.convert_points_selector(request.points)
        self.engine.delete(request.collection_name, selector)
        return self._done()

    def SetPayload(self, request: Any, context: Any) -> Any:  # noqa: N802
        selector = GrpcToRest.convert_points_selector(request.points_selector)
        payload = GrpcToRest.convert_payload(request.payload)
        self.engine.set_payload(request.collection_name, payload, points=selector)
        return self._done()

    def Query(self, request: Any, context: Any) -> Any:  # noqa: N802
        query = GrpcToRest.convert_query_points(request)
        found = self.engine.query_points(
            request.collection_name,
            query=query.query,
            using=query.using,
            query_filter=query.filter,
            limit=query.limit or 10,
            with_payload=query.with_payload if query.with_payload is not None else True,
            with_vectors=query.with_vector or False,
        )
        return qg.QueryResponse(
            result=[RestToGrpc.convert_scored_point(p) for p in found.points], time=0
        )

    def Get(self, request: Any, context: Any) -> Any:  # noqa: N802
        records = self.engine.retrieve(
            request.collection_name,
            [GrpcToRest.convert_point_id(i) for i in request.ids],
            with_payload=GrpcToRest.convert_with_payload_selector(request.with_payload),
            with_vectors=GrpcToRest.convert_with_vectors_selector(request.with_vectors),
        )
        return qg.GetResponse(result=[RestToGrpc.convert_record(r) for r in records], time=0)

    def Scroll(self, request: Any, context: Any) -> Any:  # noqa: N802
        records, next_offset = self.engine.scroll(
            request.collection_name,
            scroll_filter=self._filter(request, "filter"),
            limit=request.limit if request.HasField("limit") else 10,
            offset=GrpcToRest.convert_point_id(request.offset)
            if request.HasField("offset")
            else None,
            with_payload=GrpcToRest.convert_with_payload_selector(request.with_payload),
            with_vectors=GrpcToRest.convert_with_vectors_selector(request.with_vectors),
        )
        response = qg.ScrollResponse(result=[RestToGrpc.convert_record(r) for r in records])
        if next_offset is not None:
            offset: Any = next_offset
            response.next_page_offset.CopyFrom(RestToGrpc.convert_extended_point_id(offset))
        return response

    def Count(self, request: Any, context: Any) -> Any:  # noqa: N802
        result = self.engine.count(
            request.collection_name, count_filter=self._filter(request, "filter"), exact=True
        )
        return qg.CountResponse(result=qg.CountResult(count=result.count), time=0)


class QdrantStandIn:
    """`start()` serves on `port` (127.0.0.1); `stop()` closes the port; data survives both."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.engine = QdrantClient(location=":memory:")
        self.indexes = PayloadIndexes()
        self._server: grpc.Server | None = None

    def start(self) -> QdrantStandIn:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The generated registration functions carry no type hints.
        qdrant_pb2_grpc.add_QdrantServicer_to_server(_Root(), server)  # type: ignore[no-untyped-call]
        collections_service_pb2_grpc.add_CollectionsServicer_to_server(  # type: ignore[no-untyped-call]
            _Collections(self.engine, self.indexes), server
        )
        points_service_pb2_grpc.add_PointsServicer_to_server(  # type: ignore[no-untyped-call]
            _Points(self.engine, self.indexes), server
        )
        if server.add_insecure_port(f"127.0.0.1:{self.port}") != self.port:
            raise RuntimeError(f"port {self.port} is taken")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def close(self) -> None:
        self.stop()
        self.engine.close()
