"""The alerting rules file reads what the gateway exposes, and the guide lists what it holds.

docs/alerts/signing-gateway.rules.yml is loaded by the platform's Prometheus as it is. A metric
or label misspelt there, or renamed in `GatewayMetrics`, leaves an alert reading nothing, and
Prometheus says nothing: an empty vector is no error. So the file's PromQL is read here
(tests/support/promql.py) and held to the metrics as declared; where promtool is on PATH (CI
installs it), it also checks the rules and runs their unit tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.support.alert_rules import (
    RULES,
    RUNBOOK,
    AlertRule,
    alert_rules,
    guide_section,
    runbook_bullets,
)
from tests.support.kubernetes_manifests import manifests
from tests.support.metric_series import (
    SCRAPE_SERIES,
    TARGET_LABELS,
    expression_problems,
    readable_series,
)
from tests.support.promql import selectors_of

SEVERITIES = {"page", "ticket"}
#: The rules' unit tests, run by promtool.
RULES_TESTS = RULES.with_name("signing-gateway.rules.test.yml")
#: A row of the guide's table of alerts.
_ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| (\w+) \| (.*) \| ([^|]+) \|$")


def series_problems(rule: AlertRule, exposed: dict[str, set[str]]) -> list[str]:
    """What in `rule`'s expression the gateway does not expose: an empty list when nothing is.

    `instance` is Prometheus' own label of the pod, which a rule may group by.
    """
    return expression_problems(rule.name, rule.expr, exposed, TARGET_LABELS)


def test_every_series_and_label_an_alert_reads_is_exposed():
    """Each selector's metric is a series /metrics shows, each label it names one of its labels."""
    exposed = readable_series()
    rules = alert_rules()
    assert len(rules) >= 17
    assert [problem for rule in rules for problem in series_problems(rule, exposed)] == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(gateway_signer_call_total[5m]) > 0", "gateway_signer_call_total is not exposed"),
        ("rate(gateway_signer_shed[5m]) > 0", "gateway_signer_shed is not exposed"),
        ("gateway_request_duration_seconds > 1", "gateway_request_duration_seconds is not"),
        ('rate(gateway_signer_shed_total{singer="eu"}[5m]) > 0', "no label 'singer'"),
        ("sum by (route) (rate(gateway_signer_shed_total[5m])) > 0", "no label 'route'"),
        ("sum(rate(gateway_signer_shed_total[5m])) by (endpoint) > 0", "no label 'endpoint'"),
        ("gateway_requests_in_progress{le='1'} > 0", "no label 'le'"),
        (
            (
                "histogram_quantile(0.9, sum by (route) (rate("
                "gateway_request_duration_seconds_bucket[5m]))) > 1"
            ),
            "drops le",
        ),
        ("histogram_quantile(0.9, rate(gateway_request_duration_seconds_sum[5m])) > 1", "not of"),
        ("rate(gatway_signer_shed_total[5m]) > 0", "gatway_signer_shed_total is not exposed"),
        ("rate(a[5m]) > on(signer) rate(b[5m])", "'on' is not read here"),
        ("1 > 0", "selects no series"),
        ("rate(gateway_requests_in_progress[5m]) > 0", "rate of the gauge"),
        ("increase(gateway_signer_breaker_state[5m]) > 0", "increase of the gauge"),
        (
            (
                "sum by (signer) (rate(gateway_signer_calls_total[5m]))"
                " / sum(rate(gateway_signer_calls_total[5m])) > 0.05"
            ),
            "the sides of / group differently: by ('signer',), by ()",
        ),
        (
            (
                "sum(rate(gateway_signer_shed_total[5m])) by (signer)"
                " / rate(gateway_signer_shed_total[1h])"
            ),
            "the sides of / group differently: by ('signer',), no aggregation",
        ),
    ],
)
def test_a_misspelt_metric_or_label_is_reported(expr: str, problem: str):
    """The check names a missing metric or label, unread PromQL, a rate of a gauge, a bad ratio."""
    rule = AlertRule("Misspelt", expr, "0m", {}, {})
    [reported] = series_problems(rule, readable_series())
    assert problem in reported


@pytest.mark.parametrize(
    ("written", "mutant", "problem"),
    [
        (
            "/ sum by (job, signer) (rate(gateway_signer_calls_total[5m]))",
            "/ sum by (job) (rate(gateway_signer_calls_total[5m]))",
            (
                "SigningGatewaySignerFailing: the sides of / group differently: "
                "by ('job', 'signer'), by ('job',)"
            ),
        ),
        (
            "max_over_time(gateway_requests_in_progress[5m])",
            "rate(gateway_requests_in_progress[5m])",
            "SigningGatewayRequestsPilingUp: rate of the gauge gateway_requests_in_progress",
        ),
    ],
)
def test_a_rule_of_the_file_changed_into_a_wrong_ratio_or_rate_is_reported(
    written: str, mutant: str, problem: str
):
    """The file's own rules pass the check; one changed in one place is named by it."""
    exposed = readable_series()
    rules = alert_rules()
    assert [
        p for rule in rules if written in rule.expr for p in series_problems(rule, exposed)
    ] == []
    changed = [
        AlertRule(rule.name, rule.expr.replace(written, mutant), rule.for_, {}, {})
        for rule in rules
        if written in rule.expr
    ]
    assert len(changed) == 1
    assert [p for rule in changed for p in series_problems(rule, exposed)] == [problem]


def test_the_scrape_alerts_read_the_job_the_podmonitor_gives_and_no_other():
    """`up` of the gateway's own targets: the PodMonitor's job, in any namespace, or a bare one.

    Without `jobLabel`, the Prometheus operator names a PodMonitor's job `<namespace>/<name>`;
    a scrape config of its own would name it `signing-gateway`. A matcher that misses the job
    leaves `absent` firing for ever and the other alert silent; one that takes another job
    (the session store's exporter, say) lets its targets stand in for the gateway's pods.
    """
    podmonitor = manifests()["PodMonitor"]
    assert "jobLabel" not in podmonitor["spec"]
    name = podmonitor["metadata"]["name"]
    ours = [f"production/{name}", f"team-a-staging/{name}", name]
    others = [f"production/{name}-redis", f"{name}-canary", "production/kube-state-metrics", ""]
    read = [
        (rule.name, selector)
        for rule in alert_rules()
        for selector in selectors_of(rule.expr)
        if selector.metric in SCRAPE_SERIES
    ]
    assert {rule for rule, _ in read} == {"SigningGatewayNoPodScraped", "SigningGatewayAbsent"}
    for rule, selector in read:
        assert [job for job in ours if not selector.matches({"job": job})] == [], rule
        assert [job for job in others if selector.matches({"job": job})] == [], rule


def test_every_alert_has_a_severity_a_summary_and_a_runbook_entry():
    """`severity` page or ticket; `summary` and `description`; `runbook` names a guide bullet."""
    bullets = runbook_bullets()
    problems = []
    for rule in alert_rules():
        if rule.labels.get("severity") not in SEVERITIES:
            problems.append(f"{rule.name}: severity {rule.labels.get('severity')!r}")
        if not rule.annotations.get("summary") or not rule.annotations.get("description"):
            problems.append(f"{rule.name}: no summary or description")
        runbook = RUNBOOK.match(rule.annotations.get("runbook", ""))
        if runbook is None or runbook.group(1) not in bullets:
            problems.append(f"{rule.name}: runbook {rule.annotations.get('runbook')!r}")
    assert problems == []
    assert "### When an alert fires" in guide_section("## Metrics", "## Logs")


def _listed() -> list[tuple[str, str, str, str, str]]:
    """The guide's table of alerts: name, severity, `for`, threshold (its last code span), entry."""
    rows = []
    for line in guide_section("### Alerts worth setting", "### When an alert fires").splitlines():
        if row := _ROW.match(line):
            name, severity, for_, fires_when, entry = row.groups()
            threshold = re.findall(r"`([^`]+)`", fires_when)[-1]
            rows.append((name, severity, for_, threshold, entry.strip()))
    return rows


def test_the_guide_lists_the_alerts_of_the_rules_file():
    """Row for row, in the file's order: name, severity, `for`, threshold and runbook entry."""
    in_file = []
    for rule in alert_rules():
        _, operator, threshold = rule.comparison
        runbook = RUNBOOK.match(rule.annotations["runbook"])
        assert runbook is not None, rule.name
        row = (rule.name, rule.labels["severity"], rule.for_, f"{operator} {threshold}")
        in_file.append((*row, runbook.group(1)))
    assert _listed() == in_file


def test_promtool_reads_the_rules_and_their_unit_tests_pass():
    """`promtool check rules` reads every rule; `promtool test rules` passes the file's tests.

    The unit tests beside the rules (signing-gateway.rules.test.yml) feed synthetic series and
    say what each alert must catch and leave out; only Prometheus' own evaluator runs them.
    Skipped without promtool (Debian: package prometheus), unless `TEST_REQUIRE_PROMTOOL=1`.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("TEST_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is not on PATH, and TEST_REQUIRE_PROMTOOL=1")
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus)")
    for command in (["check", "rules", RULES.name], ["test", "rules", RULES_TESTS.name]):
        done = subprocess.run(  # noqa: S603 - promtool from the path, on the repository's files
            [promtool, *command],
            cwd=RULES.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout
