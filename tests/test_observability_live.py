"""Live observability: a real Prometheus server scrapes the three running services under load.

The services run as real processes on loopback, `segue.loadgen` drives a short, bounded load,
and Prometheus evaluates the project's own rule file. The SLO recording rules must then return
values for every service, and every metric the dashboard queries must be one the services
really export (or a recording rule, or Qdrant's own).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from deploy_helpers import (
    DASHBOARD,
    PROMETHEUS_METRICS,
    QDRANT_METRICS,
    RULE_FILE,
    dashboard_metric_names,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from segue.audio import decode
from segue.loadgen import MODEL_RATE_HZ, LoadConfig, LoadGenerator
from segue.music import find_music

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("embedder", "matcher", "mixer")

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus package (make setup)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(port: int, deadline_s: float = 60.0) -> None:
    async def check() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    end = time.monotonic() + deadline_s
    while True:
        try:
            asyncio.run(check())
            return
        except (grpc.aio.AioRpcError, AssertionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    payload = json.loads(_get(url))
    assert payload["status"] == "success", payload
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The three services and a Prometheus that scrapes them, all on loopback."""
    tmp = tmp_path_factory.mktemp("observability")
    ports = {name: (_free_port(), _free_port()) for name in SERVICES}
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, (grpc_port, metrics_port) in ports.items():
            env = {
                **os.environ,
                "SEGUE_GRPC_HOST": "127.0.0.1",
                "SEGUE_GRPC_PORT": str(grpc_port),
                "SEGUE_METRICS_PORT": str(metrics_port),
                "SEGUE_QDRANT_PATH": str(tmp / "qdrant"),
                "OMP_NUM_THREADS": "1",
            }
            log = (tmp / f"{name}.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=REPO,
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
        for grpc_port, _ in ports.values():
            _wait_healthy(grpc_port)

        config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.local.yml").read_text())
        config["rule_files"] = [str(RULE_FILE)]
        for job in config["scrape_configs"]:
            name = job["job_name"].removeprefix("segue-")
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[name][1]}"]}]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        web_port = _free_port()
        prom_log = (tmp / "prometheus.log").open("wb")
        logs.append(prom_log)
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web_port}"],
            stdout=prom_log, stderr=subprocess.STDOUT))
        prometheus = f"http://127.0.0.1:{web_port}"
        end = time.monotonic() + 30
        while True:
            try:
                _get(f"{prometheus}/-/ready")
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)

        songs = {p.stem: decode(p, MODEL_RATE_HZ)[: 20 * MODEL_RATE_HZ]
                 for p in find_music()[:3]}
        load = LoadConfig(
            embedder=f"127.0.0.1:{ports['embedder'][0]}",
            matcher=f"127.0.0.1:{ports['matcher'][0]}",
            mixer=f"127.0.0.1:{ports['mixer'][0]}",
            duration_s=12.0, rate_per_s=4.0, concurrency=4, stream_s=6.0,
        )
        report = asyncio.run(LoadGenerator(load, songs).run())
        yield {"prometheus": prometheus, "ports": ports, "report": report}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


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
    prometheus = stack["prometheus"]
    wanted = set(SERVICES)
    end = time.monotonic() + 30
    while True:
        series = _query(prometheus, "segue_slo:sli_error:ratio_rate5m")
        finite = {s["metric"].get("service") for s in series
                  if math.isfinite(float(s["value"][1]))}
        if wanted <= finite or time.monotonic() > end:
            break
        time.sleep(1)
    assert wanted <= finite, f"SLO error ratios with values only for {finite}"
    slos = {s["metric"]["slo"] for s in series}
    assert len(slos) >= 4, slos  # three latency SLOs and availability
    objectives = _query(prometheus, "segue_slo:objective:ratio")
    assert {s["metric"].get("service") for s in objectives} >= wanted


def test_dashboard_queries_only_metrics_the_live_services_export(stack: dict[str, Any]) -> None:
    exported: set[str] = set()
    for _, metrics_port in stack["ports"].values():
        text = _get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
        for family in text_string_to_metric_families(text):
            exported.update(sample.name for sample in family.samples)
    rules = yaml.safe_load(RULE_FILE.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    # Qdrant runs embedded here, so its own metrics are checked against its documented names.
    unknown = dashboard_metric_names(DASHBOARD) - exported - recorded - QDRANT_METRICS \
        - PROMETHEUS_METRICS
    assert not unknown, f"dashboard queries metrics no service exports: {sorted(unknown)}"
