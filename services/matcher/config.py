"""Settings of the matcher service, read once from the environment."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from segue.config import describe, env_bool, env_float, env_int, env_str
from services.matcher.errors import mask_url

DEFAULT_GRPC_PORT = 50052
DEFAULT_METRICS_PORT = 9102
# Admission of expensive calls (see the class docstring).
DEFAULT_MAX_PLAN_COST = 320
DEFAULT_HEAVY_WORKERS = 2
DEFAULT_HEAVY_QUEUE = 8
# The smallest SEGUE_MAX_PLAN_COST: two songs at the widest beam (playlist.MAX_BEAM_WIDTH).
MIN_PLAN_COST = 64


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
        SEGUE_MAX_PLAN_COST: the most a PlanPlaylist may cost, as songs x beam width
            (default 320, at least 64). Measured on a 2-core Xeon (the development machine):
            one plan at 320 took 0.4 to 0.7 s of CPU with 1,000 stored songs of 6 segments
            and 1.2 to 1.5 s with 5,000 (beam 32 the slowest; 200 songs x beam 32, allowed
            before, took 21 s with 1,000 songs). A request leaving beam_width to the server
            gets the default beam narrowed to fit (at least 1); one asking for a beam whose
            num_songs x beam_width is over the limit is INVALID_ARGUMENT naming num_songs
            (duration_s for a playlist by duration, its songs estimated from the first
            seed's length; its search stops at SEGUE_MAX_PLAN_COST / beam width songs).
        SEGUE_HEAVY_WORKERS: CPU-heavy calls (PlanPlaylist, Cluster) run at once, on their own
            threads, so that cheap calls never wait behind them (default 2).
        SEGUE_HEAVY_QUEUE: heavy calls that may wait for a worker (default 8); beyond
            workers + queue, a heavy call is answered RESOURCE_EXHAUSTED at once.

    The URL and API key are secrets: `describe()` and `repr()` mask them (the URL's userinfo
    and credential query parameters), and so does every matcher log line that shows a URL.
    """

    qdrant_url: str = field(default="", repr=False)
    qdrant_grpc_port: int = 6334
    qdrant_api_key: str = field(default="", repr=False)
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
    max_plan_cost: int = DEFAULT_MAX_PLAN_COST
    heavy_workers: int = DEFAULT_HEAVY_WORKERS
    heavy_queue: int = DEFAULT_HEAVY_QUEUE

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
            max_plan_cost=env_int("SEGUE_MAX_PLAN_COST", DEFAULT_MAX_PLAN_COST),
            heavy_workers=env_int("SEGUE_HEAVY_WORKERS", DEFAULT_HEAVY_WORKERS),
            heavy_queue=env_int("SEGUE_HEAVY_QUEUE", DEFAULT_HEAVY_QUEUE),
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
            "SEGUE_HEAVY_WORKERS": self.heavy_workers,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.heavy_queue < 0:
            raise ValueError(f"SEGUE_HEAVY_QUEUE must be 0 or more, got {self.heavy_queue}")
        if self.max_plan_cost < MIN_PLAN_COST:
            raise ValueError(
                f"SEGUE_MAX_PLAN_COST must be at least {MIN_PLAN_COST} (one song past the seed "
                f"at the widest beam), got {self.max_plan_cost}"
            )
        if self.qdrant_url and not self.qdrant_url.startswith(("http://", "https://")):
            raise ValueError(
                f"SEGUE_QDRANT_URL must start with http:// or https://, got "
                f"{mask_url(self.qdrant_url)!r}"
            )
        if self.write_consistency > self.replication:
            raise ValueError(
                "SEGUE_QDRANT_WRITE_CONSISTENCY cannot exceed SEGUE_QDRANT_REPLICATION"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError("SEGUE_QDRANT_TIMEOUT_S must be a positive number")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"MatcherConfig({shown})"

    def describe(self) -> dict[str, Any]:
        """The settings for the start-up log line: `segue.config.describe`, with the Qdrant
        URL's credentials and the API key masked."""
        out = describe(self)
        out["qdrant_url"] = mask_url(self.qdrant_url)
        out["qdrant_api_key"] = "***" if self.qdrant_api_key else ""
        return out
