"""Live observability: a real Prometheus server scrapes the three running services under load.

The services run as real processes on loopback, `segue.loadgen` drives a short, bounded load,
and Prometheus evaluates the project's own rule file. The SLO recording rules must then return
values for every service, and every metric the dashboard queries must be one the services
really export (or a recording rule, or Qdrant's own).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    DASHBOARD,
    PROMETHEUS_METRICS,
    QDRANT_METRICS,
    RULE_FILE,
    dashboard_metric_names,
)
from prometheus_client.parser import text_string_to_metric_families

from devkit.localstack import Stack, running_stack
from segue.audio import decode
from segue.loadgen import MODEL_RATE_HZ, LoadConfig, LoadGenerator
from segue.music import find_music

SERVICES = ("embedder", "matcher", "mixer")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="needs Debian's prometheus package (make setup)"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The three services and a Prometheus that scrapes them, all on loopback, under load."""
    workdir = tmp_path_factory.mktemp("observability")
    with running_stack(workdir, prometheus=True, env={"OMP_NUM_THREADS": "1"}) as running:
        songs = {p.stem: decode(p, MODEL_RATE_HZ)[: 20 * MODEL_RATE_HZ]
                 for p in find_music()[:3]}
        load = LoadConfig(
            embedder=running.grpc["embedder"], matcher=running.grpc["matcher"],
            mixer=running.grpc["mixer"], duration_s=12.0, rate_per_s=4.0, concurrency=4,
            stream_s=6.0,
        )
        report = asyncio.run(LoadGenerator(load, songs).run())
        yield {"stack": running, "report": report}


def test_the_load_reached_every_service_without_server_errors(stack: dict[str, Any]) -> None:
    report = stack["report"]
    assert report.latencies_s["chunk"], "no embedder chunks were timed"
    assert report.latencies_s["next"], "no NextSegment calls succeeded"
    assert report.latencies_s["render"], "no renders succeeded"
    for service in SERVICES:
        codes = report.codes[service]
        assert codes["OK"] > 0, (service, codes)
        assert not (set(codes) - {"OK"}), (service, codes, report.error_details)


def test_slo_recording_rules_return_values_for_every_service(stack: dict[str, Any]) -> None:
    running: Stack = stack["stack"]
    wanted = set(SERVICES)
    end = time.monotonic() + 30
    while True:
        series = running.query("segue_slo:sli_error:ratio_rate5m")
        finite = {s["metric"].get("service") for s in series
                  if math.isfinite(float(s["value"][1]))}
        if wanted <= finite or time.monotonic() > end:
            break
        time.sleep(1)
    assert wanted <= finite, f"SLO error ratios with values only for {finite}"
    slos = {s["metric"]["slo"] for s in series}
    assert len(slos) >= 4, slos  # three latency SLOs and availability
    objectives = running.query("segue_slo:objective:ratio")
    assert {s["metric"].get("service") for s in objectives} >= wanted


def test_dashboard_queries_only_metrics_the_live_services_export(stack: dict[str, Any]) -> None:
    exported: set[str] = set()
    for address in stack["stack"].metrics.values():
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            exported.update(sample.name for sample in family.samples)
    rules = yaml.safe_load(RULE_FILE.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    # Qdrant runs embedded here, so its own metrics are checked against its documented names.
    unknown = dashboard_metric_names(DASHBOARD) - exported - recorded - QDRANT_METRICS \
        - PROMETHEUS_METRICS - studio_metric_names()
    assert not unknown, f"dashboard queries metrics no service exports: {sorted(unknown)}"


def studio_metric_names() -> set[str]:
    """The samples segue.metrics declares for the Studio, which this stack does not run (its
    own tests read them from a live Studio: tests/test_studio_web.py)."""
    from segue import metrics

    names: set[str] = set()
    for metric in (metrics.STUDIO_REQUEST_DURATION, metrics.STUDIO_REQUESTS,
                   metrics.STUDIO_ANSWERS, metrics.STUDIO_FLAGGED_ANNOTATORS,
                   metrics.STUDIO_CLIPS_WARM):
        for family in metric.describe():
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names
