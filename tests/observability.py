"""The observability bundle (deploy/observability) as the tests read it: its dashboard's
expressions, its alert rules, the metric names an expression reads, and Debian's
``prometheus`` and ``promtool``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.services import missing

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "deploy" / "observability"
PROMETHEUS_CONFIG = BUNDLE / "prometheus" / "prometheus.yml"
RULES = BUNDLE / "prometheus" / "rules" / "luna-streams.yml"
RULE_TESTS = BUNDLE / "prometheus" / "tests"
DASHBOARD = BUNDLE / "grafana" / "dashboards" / "luna-streams.json"
DATASOURCES = BUNDLE / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

#: Grafana's interval variables, and what a test evaluates them as
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}

#: PromQL words that are not metric names
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def binary(name: str) -> str:
    """The path of Debian's ``prometheus`` or ``promtool`` (apt-get install prometheus);
    missing: skipped locally, a failure in CI."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} not found (apt-get install prometheus)")
    assert found is not None
    return found


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows, and the panels rows hold, included)."""
    found = []
    for panel in board["panels"]:
        found += panels(panel) if "panels" in panel else []
        if panel.get("type") != "row":
            found.append(panel)
    return found


def panel_expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel, Grafana's variables replaced."""
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, label names,
    keywords, durations or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in KEYWORDS}
