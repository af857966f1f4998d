"""The Grafana dashboard: current with its generator, complete (Segue Studio's row included),
valid PromQL, and reading only metrics that exist (Segue's, the SLO recording rules', Qdrant's
and `up`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import (
    DASHBOARD,
    DEPLOY,
    QDRANT_METRICS,
    dashboard_metric_names,
    load_module,
    metric_allow_list,
    queries,
    run,
    tool,
)

generator = load_module(DEPLOY / "grafana" / "dashboard.py")


def _titles() -> list[str]:
    return [p["title"] for p in queries.dashboard_panels(DASHBOARD) if p["type"] != "row"]


def test_dashboard_json_is_the_generators_output() -> None:
    assert generator.main(["--check"]) == 0


def test_dashboard_parses_with_unique_panel_ids_on_a_24_column_grid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "segue-overview"
    panels = queries.dashboard_panels(DASHBOARD)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_dashboard_has_every_required_panel() -> None:
    titles = " | ".join(_titles())
    for needle in (
        "Latency per RPC (p50 / p90 / p99)",
        "Throughput",
        "Active streams",
        "Batch sizes",
        "Error ratio",
        "Error budget burn rate",
        "Qdrant health",
        "Studio request latency p99 by route",
        "Studio answers by kind",
        "Flagged annotators",
    ):
        assert needle in titles


def test_latency_panel_shows_three_quantiles_per_rpc() -> None:
    panel = next(
        p for p in queries.dashboard_panels(DASHBOARD) if p["title"].startswith("Latency per RPC")
    )
    exprs = [t["expr"] for t in panel["targets"]]
    assert [re.match(r"histogram_quantile\(([\d.]+),", e).group(1) for e in exprs] == [  # type: ignore[union-attr]
        "0.5",
        "0.9",
        "0.99",
    ]
    assert all("by (service, method, le)" in e for e in exprs)


def test_qdrant_health_panel_reads_qdrant_scrapes_and_the_matchers_view() -> None:
    panel = next(p for p in queries.dashboard_panels(DASHBOARD) if p["title"] == "Qdrant health")
    names = set().union(*(queries.promql_metric_names(t["expr"]) for t in panel["targets"]))
    assert {"segue_matcher_qdrant_up", "up"} <= names
    assert names & QDRANT_METRICS
    assert any('up{job=~".*qdrant.*"}' in t["expr"] for t in panel["targets"])


def test_every_query_reads_only_known_metrics() -> None:
    unknown = dashboard_metric_names(DASHBOARD) - metric_allow_list()
    assert not unknown, f"dashboard reads metrics nobody exports: {sorted(unknown)}"


def test_metric_name_extraction_ignores_functions_labels_and_durations() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (service, le) (rate(segue_rpc_duration_seconds_bucket{"
        'service="matcher", method=~"Next.*"}[$__rate_interval]))) / on (slo) group_left () '
        "(1 - segue_slo:objective:ratio offset 1h) > bool 2e-3"
    )
    assert queries.promql_metric_names(expr) == {
        "segue_rpc_duration_seconds_bucket",
        "segue_slo:objective:ratio",
    }


def test_a_misspelt_metric_in_a_query_is_caught(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panel = next(p for p in dashboard["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = "sum(rate(segue_rpc_request_total[5m]))"
    broken = tmp_path / "dashboard.json"
    broken.write_text(json.dumps(dashboard))
    assert "segue_rpc_request_total" in dashboard_metric_names(broken) - metric_allow_list()


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: wrap each query in a recording rule.
    exprs = [
        e.replace("$__rate_interval", "1m").replace("${datasource}", "")
        for e in queries.dashboard_queries(DASHBOARD)
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_every_target_uses_the_datasource_variable() -> None:
    for panel in queries.dashboard_panels(DASHBOARD):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def _studio_row() -> list[dict[str, Any]]:
    """The panels between the Studio row and the next row."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels: list[dict[str, Any]] = dashboard["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Studio")
    row: list[dict[str, Any]] = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        row.append(panel)
    return row


def test_studio_row_shows_latency_by_route_answers_by_kind_and_flagged_annotators() -> None:
    row = {p["title"]: [t["expr"] for t in p["targets"]] for p in _studio_row()}
    (latency,) = row["Studio request latency p99 by route"]
    assert latency.startswith("histogram_quantile(0.99, sum by (route, le) (rate(")
    assert "segue_studio_request_duration_seconds_bucket" in latency
    (answers,) = row["Studio answers by kind (per hour)"]
    assert "sum by (kind)" in answers and "segue_studio_answers_total" in answers
    (flagged,) = row["Flagged annotators"]
    assert queries.promql_metric_names(flagged) == {"segue_studio_flagged_annotators"}
    # The kubelet's probes would make the quiet Studio look fast and busy.
    for exprs in row.values():
        for expr in exprs:
            if "segue_studio_request" in expr:
                assert 'route!="/healthz"' in expr
