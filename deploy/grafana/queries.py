"""Metric names used by the Grafana dashboard and the Prometheus rules.

`dashboard_metric_names(path)` and `rule_metric_names(path)` return the metric names (not
functions, labels or keywords) that the PromQL in those files reads, so tests can compare them
with what the services really export, statically or by scraping a live /metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# Grafana's built-in interval variables, replaced by a duration before parsing.
_GRAFANA_VARIABLE = re.compile(r"\$\{?__[a-z_]+\}?|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE_OR_SUBQUERY = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_NUMBER_OR_DURATION = re.compile(
    r"(?<![A-Za-z0-9_:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
    r"(?:ms|s|m|h|d|w|y)?(?:\d+(?:ms|s|m|h|d|w|y))*)"
)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
        "start",
        "end",
    }
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names read by one PromQL expression (Grafana variables allowed)."""
    text = _GRAFANA_VARIABLE.sub("5m", expr)
    text = _STRING.sub('""', text)
    text = _LABEL_MATCHERS.sub(" ", text)
    # Ranges nest in subqueries: strip innermost first until none is left.
    while _RANGE_OR_SUBQUERY.search(text):
        text = _RANGE_OR_SUBQUERY.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER_OR_DURATION.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("("):
            continue  # a function or an aggregation
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def _walk_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_panels(path: str | Path) -> list[dict[str, Any]]:
    """Every panel of a dashboard JSON, rows' nested panels included."""
    dashboard = json.loads(Path(path).read_text())
    return list(_walk_panels(dashboard.get("panels", [])))


def dashboard_queries(path: str | Path) -> list[str]:
    """The PromQL of every target of every panel, in order."""
    return [
        target["expr"]
        for panel in dashboard_panels(path)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def dashboard_metric_names(path: str | Path) -> set[str]:
    """Metric names that the dashboard's queries read."""
    names: set[str] = set()
    for expr in dashboard_queries(path):
        names |= promql_metric_names(expr)
    return names


def rule_expressions(path: str | Path) -> list[str]:
    data = yaml.safe_load(Path(path).read_text())
    groups = data["spec"]["groups"] if "spec" in data else data["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def recorded_names(path: str | Path) -> set[str]:
    """Names that the rule file records."""
    data = yaml.safe_load(Path(path).read_text())
    groups = data["spec"]["groups"] if "spec" in data else data["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def rule_metric_names(path: str | Path) -> set[str]:
    """Metric names that the rules read (recorded names they reuse included)."""
    names: set[str] = set()
    for expr in rule_expressions(path):
        names |= promql_metric_names(expr)
    return names
