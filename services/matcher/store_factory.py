"""Opens the store the configuration asks for: a Qdrant server when a URL is set, else the
embedded engine."""

from __future__ import annotations

from services.matcher.client_store import ClientStore
from services.matcher.config import MatcherConfig
from services.matcher.edge_store import EdgeStore
from services.matcher.instrumented_store import InstrumentedStore
from services.matcher.store import SegmentStore, VectorDims


def open_store(config: MatcherConfig) -> SegmentStore:
    dims = VectorDims(feel=config.feel_dim, transition=config.transition_dim)
    inner: SegmentStore
    if config.qdrant_url:
        inner = ClientStore.connect(
            config.qdrant_url,
            config.collection,
            dims,
            api_key=config.qdrant_api_key,
            timeout_s=config.timeout_s,
            shards=config.shards,
            replication=config.replication,
            write_consistency=config.write_consistency,
            hnsw_ef=config.hnsw_ef,
            grpc_port=config.qdrant_grpc_port,
        )
    else:
        inner = EdgeStore(config.qdrant_path, dims, hnsw_ef=config.hnsw_ef)
    return InstrumentedStore(inner)
