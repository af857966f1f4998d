"""The SLO rules: generated files current, valid for promtool, unit-tested, and consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    PROMETHEUS_RULE,
    RULE_FILE,
    RULE_TESTS,
    load_module,
    metric_allow_list,
    rule_metric_names,
    run,
    tool,
)

slo_rules = load_module(DEPLOY / "prometheus" / "slo_rules.py")


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rule_files_on_disk_are_the_generators_output() -> None:
    assert slo_rules.main(["--check"]) == 0


def test_promtool_accepts_the_rule_file() -> None:
    result = run([tool("promtool"), "check", "rules", str(RULE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_unit_tests_of_every_alert_pass() -> None:
    assert len(RULE_TESTS) >= 3
    result = run([tool("promtool"), "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_a_burn_threshold_is_wrong(tmp_path: Path) -> None:
    # Paging at 4x instead of 6x must break "burning at 5x opens a ticket without paging".
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    wrong = RULE_FILE.read_text().replace("(6.0 * 0.01)", "(4.0 * 0.01)")
    assert wrong != RULE_FILE.read_text()
    (tmp_path / "rules" / "segue.rules.yml").write_text(wrong)
    latency = yaml.safe_load((RULE_TESTS[0].parent / "slo_latency_test.yml").read_text())
    latency["tests"] = [t for t in latency["tests"] if "without paging" in t["name"]]
    assert len(latency["tests"]) == 1
    copied = tmp_path / "tests" / "slo_latency_test.yml"
    copied.write_text(yaml.safe_dump(latency))
    result = run([tool("promtool"), "test", "rules", str(copied)])
    assert result.returncode != 0
    assert "opens a ticket without paging" in result.stdout + result.stderr


def test_every_alert_is_exercised_by_a_promtool_unit_test() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    defined = {rule["alert"] for rule in _alerts(yaml.safe_load(RULE_FILE.read_text())["groups"])}
    assert defined <= tested


def test_prometheus_rule_resource_carries_exactly_the_plain_rule_file() -> None:
    plain = yaml.safe_load(RULE_FILE.read_text())
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == plain["groups"]


def test_each_slo_pages_on_fast_burn_and_tickets_on_slow_burn() -> None:
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    by_slo: dict[str, set[str]] = {}
    for rule in _alerts(groups):
        if "slo" in rule["labels"]:
            by_slo.setdefault(rule["labels"]["slo"], set()).add(rule["labels"]["severity"])
    assert by_slo == {
        "embedder-chunk-latency": {"page", "ticket"},
        "matcher-next-segment-latency": {"page", "ticket"},
        "mixer-render-speed": {"page", "ticket"},
        "availability": {"page", "ticket"},
        "studio-availability": {"page", "ticket"},
    }


def test_page_alerts_use_the_workbook_windows_and_burn_rates() -> None:
    rules = _alerts(yaml.safe_load(RULE_FILE.read_text())["groups"])
    page = next(
        r for r in rules if r["labels"] == {"severity": "page", "slo": "embedder-chunk-latency"}
    )
    ticket = next(
        r for r in rules if r["labels"] == {"severity": "ticket", "slo": "embedder-chunk-latency"}
    )
    for window, factor in (("1h", "14.4"), ("5m", "14.4"), ("6h", "6.0"), ("30m", "6.0")):
        assert f"ratio_rate{window}{{" in page["expr"] and f"({factor} * 0.01)" in page["expr"]
    for window, factor in (("1d", "3.0"), ("2h", "3.0"), ("3d", "1.0"), ("6h", "1.0")):
        assert f"ratio_rate{window}{{" in ticket["expr"]
        assert f"({factor} * 0.01)" in ticket["expr"]


def test_availability_counts_only_server_side_codes() -> None:
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    record = next(
        r
        for g in groups
        for r in g["rules"]
        if r.get("record") == "segue_slo:sli_error:ratio_rate5m"
        and r["labels"]["slo"] == "availability"
    )
    codes = "INTERNAL|UNAVAILABLE|UNKNOWN|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"
    assert f'code=~"{codes}"' in record["expr"]


def test_rules_read_only_metrics_the_services_export() -> None:
    unknown = rule_metric_names(RULE_FILE) - metric_allow_list()
    assert not unknown, f"rules read metrics nobody exports: {sorted(unknown)}"


def test_local_prometheus_config_is_valid_and_loads_the_rules() -> None:
    config = DEPLOY / "prometheus" / "prometheus.local.yml"
    result = run([tool("promtool"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    parsed = yaml.safe_load(config.read_text())
    targets = {
        t for job in parsed["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104"}
    # Job names match the Kubernetes Services', which SegueTargetDown selects on.
    jobs = {job["job_name"] for job in parsed["scrape_configs"]}
    assert jobs == {"segue-embedder", "segue-matcher", "segue-mixer", "segue-studio"}
    assert parsed["global"]["scrape_interval"] == "1s"
    assert (config.parent / parsed["rule_files"][0]).resolve() == RULE_FILE.resolve()


def _rule(name: str) -> dict[str, Any]:
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("alert") == name)


def test_studio_availability_counts_5xx_and_leaves_out_the_probes() -> None:
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    records = [
        r
        for g in groups
        for r in g["rules"]
        if r.get("record", "").startswith("segue_slo:sli_error:")
        and r["labels"]["slo"] == "studio-availability"
    ]
    assert len(records) == len(slo_rules.WINDOWS)
    for record in records:
        assert record["labels"] == {"slo": "studio-availability", "service": "studio"}
        assert 'status=~"5.."' in record["expr"]
        # Every selector of the ratio, errors and total alike, leaves /healthz out.
        assert record["expr"].count("segue_studio_requests_total{") == 3
        assert record["expr"].count('route!="/healthz"') == 3


def test_studio_latency_alert_is_a_p99_over_200_ms_without_clips_and_exports() -> None:
    rule = _rule("SegueStudioSlowRequests")
    assert rule["expr"].startswith("histogram_quantile(0.99,")
    assert rule["expr"].endswith(") > 0.2")
    assert "sum by (route, le)" in rule["expr"]
    assert 'route!~"/healthz|/study/audio/.*|/admin/export/.*"' in rule["expr"]
    assert rule["labels"] == {"severity": "ticket"}


def test_studio_alerts_point_to_the_studio_runbook() -> None:
    for name in ("SegueStudioSlowRequests", "SegueStudioFlaggedAnnotatorsRising"):
        assert _rule(name)["annotations"]["runbook"] == "deploy/README.md#segue-studio"
    # Its target is a segue-* job, so SegueTargetDown covers a Studio that stops answering.
    assert _rule("SegueTargetDown")["expr"] == 'up{job=~"segue-.*"} == 0'
