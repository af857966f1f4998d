"""Settings of the matcher service, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from segue.config import env_bool, env_float, env_int, env_str

DEFAULT_GRPC_PORT = 50052
DEFAULT_METRICS_PORT = 9102


@dataclass(frozen=True)
class MatcherConfig:
    """Where the matcher keeps its data and how it searches.

    Environment:
        SEGUE_QDRANT_URL: Qdrant server or cluster URL with its REST port, as qdrant-client
            takes it, e.g. "http://qdrant:6333"; the matcher talks gRPC to the same host on
            SEGUE_QDRANT_GRPC_PORT. Empty (the default) uses the embedded store (qdrant-edge)
            at SEGUE_QDRANT_PATH.
        SEGUE_QDRANT_GRPC_PORT: Qdrant's gRPC port (default 6334).
        SEGUE_QDRANT_API_KEY: API key for the server (default empty).
        SEGUE_QDRANT_PATH: directory of the embedded store (default "./data/matcher").
        SEGUE_QDRANT_COLLECTION: collection name on a server (default "segue_segments").
        SEGUE_QDRANT_SHARDS: shard number of a new server collection (default 1).
        SEGUE_QDRANT_REPLICATION: replication factor of a new server collection (default 1).
        SEGUE_QDRANT_WRITE_CONSISTENCY: replicas that must acknowledge a write (default 1).
        SEGUE_QDRANT_TIMEOUT_S: timeout of one call to a server (default 5).
        SEGUE_QDRANT_FLUSH_EACH_WRITE: flush the embedded store to its segments after every
            acknowledged write (default false: the write-ahead log already makes acknowledged
            writes survive a killed process; flushing also survives power loss, slower).
        SEGUE_MATCHER_FEEL_DIM: feel vector length of a new collection (default 32).
        SEGUE_MATCHER_TRANSITION_DIM: entry/exit vector length of a new collection (default 64).
        SEGUE_MATCHER_OVERFETCH: candidate segments fetched per requested result before
            re-scoring and grouping by song (default 5).
        SEGUE_MATCHER_MIN_CANDIDATES: fewest candidate segments fetched (default 50).
        SEGUE_MATCHER_BEAM_WIDTH: default beam width of PlanPlaylist (default 8).
        SEGUE_MATCHER_HNSW_EF: candidates the HNSW graph search keeps (default 128; higher
            finds more of the exact nearest entries, slower: see bench/results/matcher_*.md).
    """

    qdrant_url: str = ""
    qdrant_grpc_port: int = 6334
    qdrant_api_key: str = ""
    qdrant_path: str = "./data/matcher"
    collection: str = "segue_segments"
    shards: int = 1
    replication: int = 1
    write_consistency: int = 1
    timeout_s: float = 5.0
    flush_each_write: bool = False
    feel_dim: int = 32
    transition_dim: int = 64
    overfetch: int = 5
    min_candidates: int = 50
    beam_width: int = 8
    hnsw_ef: int = 128

    @classmethod
    def from_env(cls) -> MatcherConfig:
        config = cls(
            qdrant_url=env_str("SEGUE_QDRANT_URL", ""),
            qdrant_grpc_port=env_int("SEGUE_QDRANT_GRPC_PORT", 6334),
            qdrant_api_key=env_str("SEGUE_QDRANT_API_KEY", ""),
            qdrant_path=env_str("SEGUE_QDRANT_PATH", "./data/matcher"),
            collection=env_str("SEGUE_QDRANT_COLLECTION", "segue_segments"),
            shards=env_int("SEGUE_QDRANT_SHARDS", 1),
            replication=env_int("SEGUE_QDRANT_REPLICATION", 1),
            write_consistency=env_int("SEGUE_QDRANT_WRITE_CONSISTENCY", 1),
            timeout_s=env_float("SEGUE_QDRANT_TIMEOUT_S", 5.0),
            flush_each_write=env_bool("SEGUE_QDRANT_FLUSH_EACH_WRITE", False),
            feel_dim=env_int("SEGUE_MATCHER_FEEL_DIM", 32),
            transition_dim=env_int("SEGUE_MATCHER_TRANSITION_DIM", 64),
            overfetch=env_int("SEGUE_MATCHER_OVERFETCH", 5),
            min_candidates=env_int("SEGUE_MATCHER_MIN_CANDIDATES", 50),
            beam_width=env_int("SEGUE_MATCHER_BEAM_WIDTH", 8),
            hnsw_ef=env_int("SEGUE_MATCHER_HNSW_EF", 128),
        )
        config.validate()
        return config

    def validate(self) -> None:
        positive = {
            "SEGUE_QDRANT_GRPC_PORT": self.qdrant_grpc_port,
            "SEGUE_QDRANT_SHARDS": self.shards,
            "SEGUE_QDRANT_REPLICATION": self.replication,
            "SEGUE_QDRANT_WRITE_CONSISTENCY": self.write_consistency,
            "SEGUE_MATCHER_FEEL_DIM": self.feel_dim,
            "SEGUE_MATCHER_TRANSITION_DIM": self.transition_dim,
            "SEGUE_MATCHER_OVERFETCH": self.overfetch,
            "SEGUE_MATCHER_MIN_CANDIDATES": self.min_candidates,
            "SEGUE_MATCHER_BEAM_WIDTH": self.beam_width,
            "SEGUE_MATCHER_HNSW_EF": self.hnsw_ef,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.write_consistency > self.replication:
            raise ValueError(
                "SEGUE_QDRANT_WRITE_CONSISTENCY cannot exceed SEGUE_QDRANT_REPLICATION"
            )
        if self.timeout_s <= 0:
            raise ValueError("SEGUE_QDRANT_TIMEOUT_S must be positive")
