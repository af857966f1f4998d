"""Prometheus metrics of every Segue service, defined once.

Names follow Prometheus conventions: base units (`_seconds`), `_total` counters. The SLO
recording rules and the Grafana dashboard in deploy/ refer to exactly these names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

RPC_DURATION = Histogram(
    "segue_rpc_duration_seconds",
    "Time from an RPC's start to its end, per service and method.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS_S,
)
RPC_REQUESTS = Counter(
    "segue_rpc_requests",
    "Finished RPCs by gRPC status code name.",
    ["service", "method", "code"],
)
RPC_IN_FLIGHT = Gauge(
    "segue_rpc_in_flight",
    "RPCs being served now.",
    ["service", "method"],
)

# Embedder.
EMBEDDER_CHUNK_DURATION = Histogram(
    "segue_embedder_chunk_duration_seconds",
    "Time from a chunk's arrival to the answer carrying its last window.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EMBEDDER_BATCH_SIZE = Histogram(
    "segue_embedder_batch_size",
    "Windows per ONNX Runtime run.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
EMBEDDER_QUEUE_DELAY = Histogram(
    "segue_embedder_queue_delay_seconds",
    "Time a window waited in the batcher before its model run began.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
EMBEDDER_ACTIVE_STREAMS = Gauge(
    "segue_embedder_active_streams",
    "Analyze streams open now.",
)
EMBEDDER_AUDIO_SECONDS = Counter(
    "segue_embedder_audio_seconds",
    "Seconds of audio analysed.",
)
EMBEDDER_CHECKPOINT_BYTES = Counter(
    "segue_embedder_checkpoint_bytes",
    "Resume-token bytes sent in checkpoints (kept under SEGUE_CHECKPOINT_BYTES_PER_S per "
    "second of each stream's audio).",
)

# Matcher.
MATCHER_QDRANT_UP = Gauge(
    "segue_matcher_qdrant_up",
    "1 when the matcher's Qdrant store answered its last call, else 0.",
)
MATCHER_POINTS = Gauge(
    "segue_matcher_points",
    "Points (segments) in the matcher's collection.",
)
MATCHER_STORE_DURATION = Histogram(
    "segue_matcher_store_duration_seconds",
    "Time of one call into the Qdrant store.",
    ["operation"],
    buckets=LATENCY_BUCKETS_S,
)

# Mixer.
MIXER_RENDER_TIME_RATIO = Histogram(
    "segue_mixer_render_time_ratio",
    "Render wall time divided by the rendered audio's duration.",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
MIXER_RENDERED_AUDIO_SECONDS = Counter(
    "segue_mixer_rendered_audio_seconds",
    "Seconds of audio rendered.",
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serves /metrics over HTTP on its own port, in a daemon thread."""
    if port > 0:
        start_http_server(port, addr=host)


# Every service: calls refused before their handler ran.
AUTH_REFUSALS = Counter(
    "segue_auth_refusals",
    "Calls refused by authentication or authorisation, by reason (missing_token, "
    "malformed_token, unknown_token, missing_scope, unknown_method).",
    ["service", "reason"],
)

# Segue Studio (segue/studio): the web app gathering human judgements.
# The Studio's target is p99 < 200 ms per request: buckets around it keep the quantile exact.
STUDIO_LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)
STUDIO_REQUEST_DURATION = Histogram(
    "segue_studio_request_duration_seconds",
    "Time to answer one Studio HTTP request, by route template and method.",
    ["route", "method"],
    buckets=STUDIO_LATENCY_BUCKETS_S,
)
STUDIO_REQUESTS = Counter(
    "segue_studio_requests",
    "Finished Studio HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
STUDIO_ANSWERS = Counter(
    "segue_studio_answers",
    "Answers stored, by kind of page (triplet kinds: random, active, gold, repeat).",
    ["kind"],
)
STUDIO_CLIPS_WARM = Gauge(
    "segue_studio_clips_warm",
    "The clip warm-up at start-up: clips queued (total), handled (done) and failed.",
    ["state"],
)
STUDIO_FLAGGED_ANNOTATORS = Gauge(
    "segue_studio_flagged_annotators",
    "Annotators whose answers fail quality control, as of the last answer or stats view.",
)
