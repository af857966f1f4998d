"""Builds the Segue Grafana dashboard (segue-dashboard.json) from code.

    .venv/bin/python deploy/grafana/dashboard.py          # rewrite the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check  # exit 1 when it is stale

Queries read only metrics defined in segue/metrics.py, the SLO recording rules of
deploy/prometheus/slo_rules.py, Qdrant's own /metrics and `up`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_FILE = Path(__file__).resolve().parent / "segue-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SERVER_ERROR_CODES = "INTERNAL|UNAVAILABLE|UNKNOWN|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"


@dataclass
class Query:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    queries: list[Query]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def _quantiles(metric: str, by: str, legend: str, qs: tuple[float, ...]) -> list[Query]:
    grouping = f"{by}, le" if by else "le"
    return [
        Query(
            f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}[{RATE}])))",
            f"{legend} p{round(q * 100):d}",
        )
        for q in qs
    ]


def rows() -> list[tuple[str, list[Panel]]]:
    rpc = "segue_rpc_duration_seconds_bucket"
    burn = (
        "segue_slo:sli_error:ratio_rate{w} / on (slo, service) group_left () "
        "(1 - segue_slo:objective:ratio)"
    )
    return [
        (
            "RPCs",
            [
                Panel(
                    "Latency per RPC (p50 / p90 / p99)",
                    "Server-side duration of each gRPC method, streams from open to close.",
                    _quantiles(rpc, "service, method", "{{service}}/{{method}}", (0.5, 0.9, 0.99)),
                    unit="s",
                    width=24,
                ),
                Panel(
                    "Throughput",
                    "Finished calls per second, by method.",
                    [
                        Query(
                            f"sum by (service, method) (rate(segue_rpc_requests_total[{RATE}]))",
                            "{{service}}/{{method}}",
                        )
                    ],
                    unit="reqps",
                ),
                Panel(
                    "Error ratio",
                    "Share of calls failing with a server-side code (what the availability SLO"
                    " counts), and with any non-OK code.",
                    [
                        Query(
                            "sum by (service) (rate(segue_rpc_requests_total"
                            f'{{code=~"{SERVER_ERROR_CODES}"}}[{RATE}]))'
                            " / sum by (service) "
                            f"(rate(segue_rpc_requests_total[{RATE}]))",
                            "{{service}} server errors",
                        ),
                        Query(
                            "sum by (service) (rate(segue_rpc_requests_total"
                            f'{{code!="OK"}}[{RATE}]))'
                            " / sum by (service) "
                            f"(rate(segue_rpc_requests_total[{RATE}]))",
                            "{{service}} all non-OK",
                        ),
                    ],
                    unit="percentunit",
                ),
                Panel(
                    "Calls in flight",
                    "Calls being served now; Analyze streams stay open for a whole song.",
                    [
                        Query(
                            "sum by (service, method) (segue_rpc_in_flight)",
                            "{{service}}/{{method}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Embedder",
            [
                Panel(
                    "Active streams",
                    "Open Analyze streams, in total and per pod"
                    " (limit SEGUE_MAX_CONCURRENT_STREAMS).",
                    [
                        Query("sum(segue_embedder_active_streams)", "total"),
                        Query("segue_embedder_active_streams", "{{instance}}"),
                    ],
                ),
                Panel(
                    "Batch sizes",
                    "Windows per ONNX Runtime run: concurrent streams share model runs.",
                    [
                        *_quantiles(
                            "segue_embedder_batch_size_bucket", "", "batch", (0.5, 0.9, 0.99)
                        ),
                        Query(
                            f"sum(rate(segue_embedder_batch_size_sum[{RATE}]))"
                            f" / sum(rate(segue_embedder_batch_size_count[{RATE}]))",
                            "mean",
                        ),
                    ],
                ),
                Panel(
                    "Chunk latency and batch queue delay",
                    "Chunk arrival to its windows' answer (SLO: p99 under 50 ms), and time"
                    " spent waiting for a batch.",
                    _quantiles(
                        "segue_embedder_chunk_duration_seconds_bucket", "", "chunk", (0.5, 0.99)
                    )
                    + _quantiles(
                        "segue_embedder_queue_delay_seconds_bucket", "", "queue delay", (0.99,)
                    ),
                    unit="s",
                    thresholds=[(0.05, "red")],
                ),
                Panel(
                    "Audio analysed",
                    "Seconds of audio analysed per second of wall time (x real time).",
                    [
                        Query(
                            f"sum(rate(segue_embedder_audio_seconds_total[{RATE}]))",
                            "x real time",
                        )
                    ],
                ),
                Panel(
                    "Checkpoint tokens",
                    "Resume-token bytes sent per second of audio analysed; each stream keeps"
                    " under SEGUE_CHECKPOINT_BYTES_PER_S (default 32 KiB).",
                    [
                        Query(
                            f"sum(rate(segue_embedder_checkpoint_bytes_total[{RATE}]))"
                            f" / sum(rate(segue_embedder_audio_seconds_total[{RATE}]))",
                            "token bytes per audio second",
                        )
                    ],
                    unit="bytes",
                ),
            ],
        ),
        (
            "Matcher and Qdrant",
            [
                Panel(
                    "Qdrant health",
                    "Matchers that reach Qdrant, Qdrant peers up and in the cluster, and raft"
                    " operations not yet applied.",
                    [
                        Query("min(segue_matcher_qdrant_up)", "matcher reaches Qdrant"),
                        Query('sum(up{job=~".*qdrant.*"})', "peers scraped"),
                        Query("max(cluster_peers_total)", "peers in cluster"),
                        Query("max(cluster_pending_operations_total)", "pending operations"),
                        Query("max(collections_total)", "collections"),
                        Query("count by (version) (app_info)", "version {{version}}"),
                    ],
                    kind="stat",
                    width=24,
                    height=5,
                ),
                Panel(
                    "Qdrant requests",
                    "REST and gRPC responses per second on all peers, and failures.",
                    [
                        Query(f"sum(rate(rest_responses_total[{RATE}]))", "REST"),
                        Query(f"sum(rate(grpc_responses_total[{RATE}]))", "gRPC"),
                        Query(f"sum(rate(rest_responses_fail_total[{RATE}]))", "REST failed"),
                        Query(f"sum(rate(grpc_responses_fail_total[{RATE}]))", "gRPC failed"),
                    ],
                    unit="reqps",
                ),
                Panel(
                    "Store calls and points",
                    "p99 of the matcher's calls into Qdrant by operation; stored points.",
                    [
                        *_quantiles(
                            "segue_matcher_store_duration_seconds_bucket",
                            "operation",
                            "{{operation}}",
                            (0.99,),
                        ),
                        Query("max(segue_matcher_points)", "points"),
                    ],
                    unit="s",
                ),
            ],
        ),
        (
            "Mixer",
            [
                Panel(
                    "Render time ratio",
                    "Render wall time / rendered duration (SLO: p99 under 0.1).",
                    _quantiles("segue_mixer_render_time_ratio_bucket", "", "ratio", (0.5, 0.99)),
                    thresholds=[(0.1, "red")],
                ),
                Panel(
                    "Audio rendered",
                    "Seconds of audio rendered per second of wall time.",
                    [
                        Query(
                            f"sum(rate(segue_mixer_rendered_audio_seconds_total[{RATE}]))",
                            "x real time",
                        )
                    ],
                ),
            ],
        ),
        (
            "Studio",
            [
                Panel(
                    "Studio request latency p99 by route",
                    "99th percentile of the time to answer each route template (alert: over"
                    " 200 ms for 15 minutes, clips and exports left out: a clip's first request"
                    " cuts it with ffmpeg).",
                    _quantiles(
                        'segue_studio_request_duration_seconds_bucket{route!="/healthz"}',
                        "route",
                        "{{route}}",
                        (0.99,),
                    ),
                    unit="s",
                    thresholds=[(0.2, "red")],
                ),
                Panel(
                    "Studio requests by status",
                    "Requests per second by status code, probes of /healthz left out (the"
                    " studio-availability SLO counts 5xx; its burn rate is in the SLOs row).",
                    [
                        Query(
                            "sum by (status) (rate(segue_studio_requests_total"
                            f'{{route!="/healthz"}}[{RATE}]))',
                            "{{status}}",
                        ),
                    ],
                    unit="reqps",
                ),
                Panel(
                    "Studio answers by kind (per hour)",
                    "Answers stored in the last hour, by kind of page: random, active, gold,"
                    " repeat.",
                    [
                        Query(
                            "sum by (kind) (increase(segue_studio_answers_total[1h]))",
                            "{{kind}}",
                        )
                    ],
                ),
                Panel(
                    "Flagged annotators",
                    "Annotators whose answers fail quality control (gold and repeated pages,"
                    " listening time), as of the last answer or admin stats view; their answers"
                    " stay out of exports.",
                    [Query("max(segue_studio_flagged_annotators)", "flagged annotators")],
                ),
                Panel(
                    "Studio clips cut ahead",
                    "The library's clip warm-up after a start: clips queued, cut (or found"
                    " cached) and failed. Send invites once done reaches total.",
                    [Query("max by (state) (segue_studio_clips_warm)", "{{state}}")],
                ),
            ],
        ),
        (
            "SLOs",
            [
                Panel(
                    "Error budget burn rate (1h and 6h)",
                    "How many times faster than sustainable each SLO spends its 30-day budget;"
                    " pages above 14.4 (1h) and 6 (6h).",
                    [
                        Query(burn.format(w="1h"), "{{slo}} {{service}} 1h"),
                        Query(burn.format(w="6h"), "{{slo}} {{service}} 6h"),
                    ],
                    thresholds=[(6.0, "orange"), (14.4, "red")],
                ),
                Panel(
                    "Error budget burn rate (5m and 3d)",
                    "The short reset window of the page and the slowest ticket window.",
                    [
                        Query(burn.format(w="5m"), "{{slo}} {{service}} 5m"),
                        Query(burn.format(w="3d"), "{{slo}} {{service}} 3d"),
                    ],
                    thresholds=[(1.0, "orange")],
                ),
            ],
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
            }
            for i, q in enumerate(panel.queries)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for title, row_panels in rows():
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": "segue-overview",
        "title": "Segue",
        "description": "Segue services, Segue Studio, Qdrant and SLO burn rates. Generated by"
        " deploy/grafana/dashboard.py.",
        "tags": ["segue"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Writes deploy/grafana/segue-dashboard.json")
    parser.add_argument("--check", action="store_true", help="fail when the JSON is stale")
    args = parser.parse_args(argv)
    text = dashboard_text()
    if args.check:
        if not DASHBOARD_FILE.exists() or DASHBOARD_FILE.read_text() != text:
            print(f"stale: {DASHBOARD_FILE} (run {Path(__file__).name})", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_FILE.write_text(text)
    print(f"wrote {DASHBOARD_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
