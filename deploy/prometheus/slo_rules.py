"""Segue's SLOs as Prometheus recording and alerting rules.

The rules follow the multi-window, multi-burn-rate alerts of Google's SRE workbook
("Alerting on SLOs", table 5-8) over a 30-day SLO period.  This module is the single source
of truth: it writes the plain rule file for Prometheus and the PrometheusRule resource for the
Prometheus Operator, and the tests check that both files on disk are exactly its output.

    .venv/bin/python deploy/prometheus/slo_rules.py          # rewrite both files
    .venv/bin/python deploy/prometheus/slo_rules.py --check  # exit 1 when they are stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY_DIR = Path(__file__).resolve().parent.parent
RULE_FILE = DEPLOY_DIR / "prometheus" / "rules" / "segue.rules.yml"
PROMETHEUS_RULE_FILE = DEPLOY_DIR / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"

SERVICES = ("embedder", "matcher", "mixer")
# gRPC codes that mean the server failed the call; client mistakes do not spend the budget.
SERVER_ERROR_CODES = (
    "INTERNAL",
    "UNAVAILABLE",
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "DATA_LOSS",
    "UNIMPLEMENTED",
)
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# Segue Studio's HTTP requests that count: the kubelet's probes of /healthz would otherwise
# drown a quiet web app's real traffic.
STUDIO_REQUESTS = 'segue_studio_requests_total{route!="/healthz"}'
# The Studio's p99 latency alert leaves out the routes that are slow by design: a clip's first
# request cuts and encodes it with ffmpeg, and an export writes every answer.
STUDIO_SLOW_ROUTES = "/healthz|/study/audio/.*|/admin/export/.*"
STUDIO_P99_LIMIT_S = 0.2


@dataclass(frozen=True)
class BurnAlert:
    """One row of the workbook's table: both windows must burn faster than `factor`."""

    long_window: str
    short_window: str
    factor: float
    severity: str


# SRE workbook table 5-8: 2% and 5% of a 30-day budget page, 10% opens a ticket.
BURN_ALERTS = (
    BurnAlert("1h", "5m", 14.4, "page"),
    BurnAlert("6h", "30m", 6.0, "page"),
    BurnAlert("1d", "2h", 3.0, "ticket"),
    BurnAlert("3d", "6h", 1.0, "ticket"),
)


@dataclass(frozen=True)
class Slo:
    """A ratio SLO: `objective` of events are good, measured by `error_ratio(window)`."""

    name: str
    alert: str
    service: str
    objective: float
    description: str
    # PromQL of the bad-event ratio with "{w}" standing for the rate window.
    error_ratio: str
    # Availability is computed for every service by one expression with a service label.
    per_service: bool = False

    def expr(self, window: str) -> str:
        return self.error_ratio.replace("{w}", window)


def _latency_ratio(bucket: str, count: str) -> str:
    return f"1 - (\n  sum(rate({bucket}[{{w}}]))\n/\n  sum(rate({count}[{{w}}]))\n)"


_SERVER_ERRORS = "|".join(SERVER_ERROR_CODES)
# `or ... * 0` keeps a zero ratio for services that have traffic but no server errors.
_AVAILABILITY = (
    "(\n"
    "  sum by (service) (rate(segue_rpc_requests_total"
    f'{{code=~"{_SERVER_ERRORS}"}}[{{w}}]))\n'
    "or\n"
    "  sum by (service) (rate(segue_rpc_requests_total[{w}])) * 0\n"
    ")\n/\n"
    "  sum by (service) (rate(segue_rpc_requests_total[{w}]))"
)

_STUDIO_ERRORS = STUDIO_REQUESTS.replace("}", ',status=~"5.."}')
_STUDIO_AVAILABILITY = (
    "(\n"
    f"  sum(rate({_STUDIO_ERRORS}[{{w}}]))\n"
    "or\n"
    f"  sum(rate({STUDIO_REQUESTS}[{{w}}])) * 0\n"
    ")\n/\n"
    f"  sum(rate({STUDIO_REQUESTS}[{{w}}]))"
)

SLOS = (
    Slo(
        name="embedder-chunk-latency",
        alert="SegueEmbedderChunkLatencyBudgetBurn",
        service="embedder",
        objective=0.99,
        description="99% of audio chunks are answered within 50 ms.",
        error_ratio=_latency_ratio(
            'segue_embedder_chunk_duration_seconds_bucket{le="0.05"}',
            "segue_embedder_chunk_duration_seconds_count",
        ),
    ),
    Slo(
        name="matcher-next-segment-latency",
        alert="SegueMatcherNextSegmentLatencyBudgetBurn",
        service="matcher",
        objective=0.99,
        description="99% of NextSegment calls finish within 25 ms.",
        error_ratio=_latency_ratio(
            'segue_rpc_duration_seconds_bucket{service="matcher",method="NextSegment",le="0.025"}',
            'segue_rpc_duration_seconds_count{service="matcher",method="NextSegment"}',
        ),
    ),
    Slo(
        name="mixer-render-speed",
        alert="SegueMixerRenderSpeedBudgetBurn",
        service="mixer",
        objective=0.99,
        description="99% of renders take less than 0.1x the rendered audio's duration.",
        error_ratio=_latency_ratio(
            'segue_mixer_render_time_ratio_bucket{le="0.1"}',
            "segue_mixer_render_time_ratio_count",
        ),
    ),
    Slo(
        name="availability",
        alert="SegueAvailabilityBudgetBurn",
        service="",
        objective=0.999,
        description="99.9% of calls to each service do not fail with a server-side error.",
        error_ratio=_AVAILABILITY,
        per_service=True,
    ),
    Slo(
        name="studio-availability",
        alert="SegueStudioAvailabilityBudgetBurn",
        service="studio",
        objective=0.995,
        description="99.5% of Segue Studio's requests (probes left out) are not answered "
        "with a 5xx status.",
        error_ratio=_STUDIO_AVAILABILITY,
    ),
)

ERROR_RATIO_RECORD = "segue_slo:sli_error:ratio_rate{w}"
OBJECTIVE_RECORD = "segue_slo:objective:ratio"


def _labels(slo: Slo) -> dict[str, str]:
    labels = {"slo": slo.name}
    if not slo.per_service:
        labels["service"] = slo.service
    return labels


def _selector(slo: Slo) -> str:
    return '{slo="' + slo.name + '"}'


def recording_rules(slo: Slo) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "record": ERROR_RATIO_RECORD.format(w=w),
            "expr": slo.expr(w),
            "labels": _labels(slo),
        }
        for w in WINDOWS
    ]
    if slo.per_service:
        for service in SERVICES:
            rules.append(
                {
                    "record": OBJECTIVE_RECORD,
                    "expr": f"vector({slo.objective})",
                    "labels": {"slo": slo.name, "service": service},
                }
            )
    else:
        rules.append(
            {
                "record": OBJECTIVE_RECORD,
                "expr": f"vector({slo.objective})",
                "labels": _labels(slo),
            }
        )
    return rules


def _burn_condition(slo: Slo, alert: BurnAlert) -> str:
    budget = round(1 - slo.objective, 6)
    threshold = f"({alert.factor} * {budget})"
    long_rec = ERROR_RATIO_RECORD.format(w=alert.long_window)
    short_rec = ERROR_RATIO_RECORD.format(w=alert.short_window)
    sel = _selector(slo)
    return f"(\n  {long_rec}{sel} > {threshold}\nand\n  {short_rec}{sel} > {threshold}\n)"


def alerting_rules(slo: Slo) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for severity in ("page", "ticket"):
        rows = [a for a in BURN_ALERTS if a.severity == severity]
        expr = "\nor\n".join(_burn_condition(slo, a) for a in rows)
        windows = ", ".join(f"{a.long_window}/{a.short_window} at {a.factor:g}x" for a in rows)
        who = "{{ $labels.service }}"
        rules.append(
            {
                "alert": slo.alert,
                "expr": expr,
                "labels": {"severity": severity, "slo": slo.name},
                "annotations": {
                    "summary": f"{who} is burning its {slo.name} error budget too fast",
                    "description": (
                        f"SLO: {slo.description} The error budget burns faster than allowed "
                        f"over the windows {windows} (SRE workbook multi-window alert)."
                    ),
                    "runbook": "deploy/README.md#slos",
                },
            }
        )
    return rules


def health_rules() -> list[dict[str, Any]]:
    """Symptom alerts that the SLOs cannot see: no data is not a good SLI."""
    return [
        {
            "alert": "SegueTargetDown",
            "expr": 'up{job=~"segue-.*"} == 0',
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.job }} target {{ $labels.instance }} is down",
                "description": "Prometheus has not scraped this Segue service for 5 minutes.",
            },
        },
        {
            "alert": "SegueMatcherQdrantUnreachable",
            "expr": "max by (instance) (segue_matcher_qdrant_up) == 0",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Matcher {{ $labels.instance }} cannot reach Qdrant",
                "description": "NextSegment and UpsertSong answer UNAVAILABLE until it can.",
            },
        },
        {
            "alert": "SegueStudioSlowRequests",
            "expr": (
                "histogram_quantile(0.99,\n"
                "  sum by (route, le) (rate(segue_studio_request_duration_seconds_bucket"
                f'{{route!~"{STUDIO_SLOW_ROUTES}"}}[10m]))\n'
                f") > {STUDIO_P99_LIMIT_S}"
            ),
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Segue Studio answers {{ $labels.route }} slowly "
                f"(p99 over {STUDIO_P99_LIMIT_S * 1000:g} ms)",
                "description": (
                    "The 99th percentile of the route's requests has stayed above "
                    f"{STUDIO_P99_LIMIT_S * 1000:g} ms for "
                    "15 minutes (clips and exports are left out: they run ffmpeg or write "
                    "every answer). Look at the database and the pod's CPU."
                ),
                "runbook": "deploy/README.md#segue-studio",
            },
        },
        {
            "alert": "SegueStudioFlaggedAnnotatorsRising",
            # Restart-proof: the gauge reads 0 after a restart until the next answer, and the
            # day's maximum still holds the earlier count.
            "expr": (
                "max(segue_studio_flagged_annotators)\n"
                "-\n"
                "max(max_over_time(segue_studio_flagged_annotators[1d] offset 1h))\n"
                ">= 3"
            ),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $value }} more Studio annotators failed quality control "
                "within an hour",
                "description": (
                    "More annotators than ever in the day before fail the gold and repeat "
                    "checks: a leaked invite, a bot, or a broken clip or gold triplet. Their "
                    "answers stay out of exports; see the admin page."
                ),
                "runbook": "deploy/README.md#segue-studio",
            },
        },
        {
            "alert": "SegueQdrantNodeDown",
            "expr": 'up{job=~".*qdrant.*"} == 0',
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Qdrant node {{ $labels.instance }} is down",
                "description": (
                    "With replication factor 2 every shard still has a copy; "
                    "a second node down loses shards."
                ),
            },
        },
    ]


def rule_groups() -> list[dict[str, Any]]:
    recording: list[dict[str, Any]] = []
    alerting: list[dict[str, Any]] = []
    for slo in SLOS:
        recording.extend(recording_rules(slo))
        alerting.extend(alerting_rules(slo))
    return [
        {"name": "segue-slo-recording", "rules": recording},
        {"name": "segue-slo-alerts", "rules": alerting},
        {"name": "segue-health", "rules": health_rules()},
    ]


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line PromQL as block scalars so the files stay readable."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _str_presenter)

_HEADER = "# Generated by deploy/prometheus/slo_rules.py: edit that file, then run it.\n"


def dump_yaml(data: Any) -> str:
    return _HEADER + yaml.dump(
        data, Dumper=_LiteralDumper, sort_keys=False, width=100, allow_unicode=True
    )


def rule_file_text() -> str:
    return dump_yaml({"groups": rule_groups()})


def prometheus_rule_text() -> str:
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "segue-slos",
            "labels": {"app.kubernetes.io/name": "segue", "prometheus": "segue"},
        },
        "spec": {"groups": rule_groups()},
    }
    return dump_yaml(resource)


def outputs() -> dict[Path, str]:
    return {RULE_FILE: rule_file_text(), PROMETHEUS_RULE_FILE: prometheus_rule_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    stale = [p for p, text in outputs().items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path} (run {Path(__file__).name})", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
