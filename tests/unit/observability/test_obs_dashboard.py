"""The Grafana dashboard reads what the gateway exposes and shows each alert at its threshold.

docs/dashboards/signing-gateway.json is imported into Grafana as it is. A metric or label
misspelt there, or renamed in `GatewayMetrics`, leaves a panel empty ("No data"), which the
operator paged at night may take for calm. So the panels' PromQL is read here
(tests/support/promql.py, with Grafana's own variables put in first) and held to the metrics as
declared, like the alerts' (test_obs_alert_rules.py), and each alert's panel to the alert's
expression and threshold.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.alert_rules import ROOT, RUNBOOK, AlertRule, alert_rules, runbook_bullets
from tests.support.metric_series import (
    TARGET_LABELS,
    declared_metrics,
    expression_problems,
    readable_series,
    series_of,
)
from tests.support.promql import PromqlNotRead, selectors_of

DASHBOARD = ROOT / "docs" / "dashboards" / "signing-gateway.json"
#: Every panel and query reads the Prometheus data source the importer picks.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The dashboard's variables: the data source picked at import, the gateway deployment (its
#: scrape job: a Prometheus may scrape several), and that deployment's pods.
VARIABLES = {
    "datasource": "prometheus",
    "job": "label_values(gateway_requests_received_total, job)",
    "instance": 'label_values(gateway_requests_received_total{job="$job"}, instance)',
}
#: Grafana's own variables, and a value of theirs for reading the expression.
BUILT_IN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
#: `$name`, `${name}` (with a format, `${name:regex}`) and the older `[[name]]`.
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
POD_FILTER = ("instance", "=~", "$instance")
#: Metrics `GatewayMetrics` declares that no panel shows, each with the reason.
LEFT_OUT: dict[str, str] = {}
_ALERT = re.compile(r"Alert `(\w+)`")
_RUNBOOK_LINK = re.compile(r"Runbook: (docs/operations\.md#when-an-alert-fires \([^)]+\))")
_POD_FILTERS = (', instance=~"$instance"', 'instance=~"$instance", ', '{instance=~"$instance"}')


def load_dashboard(text: str | None = None) -> dict[str, Any]:
    """The dashboard file, or `text` read as one."""
    document: dict[str, Any] = json.loads(
        DASHBOARD.read_text(encoding="utf-8") if text is None else text
    )
    return document


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows too, and those a collapsed row holds."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def graphs(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show something: every one but the rows."""
    return [panel for panel in all_panels(dashboard) if panel["type"] != "row"]


def as_promql(expr: str, variables: set[str]) -> tuple[str, list[str]]:
    """`expr` with Grafana's variables given a value, and the variables it names that no one has.

    The dashboard's own (`$instance`) stay as they are: inside a matcher's string they read as
    a regex, and anywhere else the reader refuses them.
    """
    unknown = []

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name in BUILT_IN:
            return BUILT_IN[name]
        if name not in variables:
            unknown.append(name)
        return match.group()

    return _VARIABLE.sub(value, expr), unknown


def structure_problems(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana would refuse or place oddly, and any query not on the datasource variable."""
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    problems = [
        f"variable {name}: {variables.get(name)}"
        for name, query in VARIABLES.items()
        if _query_of(variables.get(name, {})) != query
    ]
    problems.extend(
        f"variable {name}: datasource {variables.get(name)}"
        for name in ("job", "instance")
        if variables.get(name, {}).get("datasource") != DATASOURCE
    )
    if "allValue" in variables.get("instance", {}):
        # A fixed "All" (`.*`) would take every deployment's pods, not the chosen one's.
        problems.append("variable instance: allValue")
    ids = [panel.get("id") for panel in all_panels(dashboard)]
    problems.extend(f"duplicate id {i}" for i in sorted({i for i in ids if ids.count(i) > 1}))
    for panel in all_panels(dashboard):
        position = panel.get("gridPos", {})
        if set(position) != {"h", "w", "x", "y"} or position["x"] + position["w"] > 24:
            problems.append(f"{panel.get('title')}: gridPos {position}")
    for panel in graphs(dashboard):
        title = panel.get("title")
        if panel.get("datasource") != DATASOURCE or not panel.get("targets"):
            problems.append(f"{title}: datasource {panel.get('datasource')} or no targets")
        ref_ids = [target.get("refId") for target in panel.get("targets", [])]
        if not all(ref_ids) or len(set(ref_ids)) != len(ref_ids):
            problems.append(f"{title}: refIds {ref_ids}")
        problems.extend(
            f"{title} {target.get('refId')}: no expr, or its datasource"
            for target in panel.get("targets", [])
            if not target.get("expr") or target.get("datasource") != DATASOURCE
        )
    return problems


def _query_of(variable: dict[str, Any]) -> str | None:
    """A variable's query: a string, or the query editor's object holding one."""
    query = variable.get("query")
    return query.get("query") if isinstance(query, dict) else query


def series_problems(dashboard: dict[str, Any]) -> list[str]:
    """What the panels' queries read that the gateway does not expose, or not per pod."""
    exposed = readable_series()
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    problems = []
    for panel in graphs(dashboard):
        for target in panel["targets"]:
            name = f"{panel['title']} {target['refId']}"
            expr, unknown = as_promql(target["expr"], variables)
            problems.extend(f"{name}: ${v} is no variable of the dashboard" for v in unknown)
            found = expression_problems(name, expr, exposed, TARGET_LABELS)
            problems.extend(found)
            if not found:
                problems.extend(
                    f"{name}: {selector.metric} is not filtered by $instance"
                    for selector in selectors_of(expr)
                    if POD_FILTER not in selector.matchers
                )
    return problems


def shown_series(dashboard: dict[str, Any]) -> set[str]:
    """Every series a panel's query selects."""
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    return {
        selector.metric
        for panel in graphs(dashboard)
        for target in panel["targets"]
        for selector in selectors_of(as_promql(target["expr"], variables)[0])
    }


def test_the_dashboard_is_one_grafana_imports_on_a_prometheus_of_its_choice():
    """Unique ids, a place for each panel, every query with a refId and the datasource variable."""
    dashboard = load_dashboard()
    assert structure_problems(dashboard) == []
    assert dashboard["schemaVersion"] >= 39


def test_every_series_and_label_a_panel_reads_is_exposed_per_pod():
    """Each query's metrics and labels are `GatewayMetrics`', each selector filtered by pod."""
    dashboard = load_dashboard()
    assert len(graphs(dashboard)) >= 20
    assert series_problems(dashboard) == []


@pytest.mark.parametrize(
    ("written", "misspelt", "problem"),
    [
        ("gateway_signer_shed_total{", "gateway_signer_shed{", "gateway_signer_shed is not"),
        ("(job, reason) (rate(gateway_auth", "(job, reasons) (rate(gateway_auth", "no label 'reas"),
        (', status_class=\\"disconnected', ', statusclass=\\"disconnected', "no label 'statusc"),
        ("(job, le, route) (rate(", "(job, route) (rate(", "drops le"),
        (
            "/ sum by (job, signer) (rate(gateway_signer_calls_total{",
            "/ sum by (job) (rate(gateway_signer_calls_total{",
            "the sides of / group differently",
        ),
        (
            "max_over_time(gateway_requests_in_progress",
            "rate(gateway_requests_in_progress",
            "rate of the gauge",
        ),
        ("[$__rate_interval]", "[$rate_interval]", "$rate_interval is no variable"),
        ("[$__rate_interval]", "[$__rate_interval", "where ] was due"),
        (
            'gateway_audit_write_failures_total{instance=~\\"$instance\\"}',
            "gateway_audit_write_failures_total",
            "gateway_audit_write_failures_total is not filtered by $instance",
        ),
        ('"refId": "B"', '"refId": "A"', "refIds ['A', 'A']"),
        ('"uid": "${datasource}"', '"uid": "prometheus"', "variable job: datasource"),
        (
            '"uid": "${datasource}"\n      },\n      "gridPos"',
            '"uid": "P0"\n      },\n      "gridPos"',
            ": datasource",
        ),
        (
            "label_values(gateway_requests_received_total,",
            "label_values(gateway_requests,",
            "variable job",
        ),
        ('{job=\\"$job\\"}, instance)', ", instance)", "variable instance"),
        ('"multi": true,', '"allValue": ".*", "multi": true,', "variable instance: allValue"),
        ('"id": 3,', '"id": 2,', "duplicate id 2"),
    ],
)
def test_a_misspelt_metric_label_or_variable_is_reported(written: str, misspelt: str, problem: str):
    """The checks above name what the dashboard misspells: the file, changed in one place."""
    text = DASHBOARD.read_text(encoding="utf-8")
    assert written in text
    dashboard = load_dashboard(text.replace(written, misspelt, 1))
    try:
        problems = structure_problems(dashboard) + series_problems(dashboard)
    except (KeyError, PromqlNotRead) as exc:
        problems = [repr(exc)]
    assert any(problem in reported for reported in problems), problems


def test_every_metric_is_on_a_panel_or_left_out_with_a_reason():
    """Each metric `GatewayMetrics` declares has a panel, or a reason in `LEFT_OUT`."""
    shown = shown_series(load_dashboard())
    declared = declared_metrics()
    on_a_panel = {
        name for name, (kind, _) in declared.items() if shown & set(series_of(name, kind))
    }
    assert set(declared) - on_a_panel - set(LEFT_OUT) == set()
    assert set(LEFT_OUT) & on_a_panel == set()
    assert set(LEFT_OUT) <= set(declared)


def unfiltered(expr: str) -> str:
    """`expr` without its pod filter, and without white space (the rules file breaks lines)."""
    for pod_filter in _POD_FILTERS:
        expr = expr.replace(pod_filter, "")
    return "".join(expr.split())


def threshold_problems(rule: AlertRule, panel: dict[str, Any]) -> list[str]:
    """A step at the alert's threshold, red or orange above it (green above, for `<`).

    An alert on equality (`== 0`) has a value mapping in a colour other than green instead.
    """
    defaults = panel["fieldConfig"]["defaults"]
    _, operator, _ = rule.comparison
    where = f"{rule.name} on {panel['title']!r}"
    if operator == "==":
        mapped = {
            float(value): shown["color"]
            for mapping in defaults.get("mappings", [])
            if mapping["type"] == "value"
            for value, shown in mapping["options"].items()
        }
        if mapped.get(rule.threshold, "green") == "green":
            return [f"{where}: no mapping of {rule.threshold} to an alerting colour"]
        return []
    steps = {step["value"]: step["color"] for step in defaults["thresholds"]["steps"]}
    if rule.threshold not in steps:
        return [f"{where}: no threshold at {rule.threshold}, only at {sorted(steps, key=str)}"]
    healthy_above = operator in {"<", "<="}
    if (steps[rule.threshold] == "green") != healthy_above:
        return [f"{where}: {steps[rule.threshold]} from {rule.threshold}"]
    return []


def test_each_alert_has_a_panel_plotting_its_expression_at_its_threshold():
    """The panel naming an alert plots what it compares, marks its threshold, links its runbook."""
    panels = graphs(load_dashboard())
    rules = {rule.name: rule for rule in alert_rules()}
    named = {name for panel in panels for name in _ALERT.findall(panel["description"])}
    assert named == set(rules)
    problems = []
    for panel in panels:
        plotted = [unfiltered(target["expr"]) for target in panel["targets"]]
        link = _RUNBOOK_LINK.search(panel["description"])
        for rule in (rules[name] for name in _ALERT.findall(panel["description"])):
            if "".join(rule.comparison[0].split()) not in plotted:
                problems.append(f"{rule.name}: {panel['title']!r} plots {plotted}")
            if link is None or link.group(1) != rule.annotations["runbook"]:
                problems.append(f"{rule.name}: {panel['title']!r} links another runbook entry")
            problems.extend(threshold_problems(rule, panel))
    assert problems == []


def test_every_panel_says_what_healthy_looks_like_and_links_its_runbook_entry():
    """Each description has "Healthy:" and a runbook entry of "When an alert fires"."""
    bullets = runbook_bullets()
    problems = []
    for panel in graphs(load_dashboard()):
        link = _RUNBOOK_LINK.search(panel.get("description", ""))
        entry = RUNBOOK.match(link.group(1)) if link else None
        if "Healthy: " not in panel.get("description", ""):
            problems.append(f"{panel['title']}: no Healthy")
        if entry is None or entry.group(1) not in bullets:
            problems.append(f"{panel['title']}: runbook {link and link.group(1)}")
    assert problems == []
