"""The gateway's alerting rules (docs/alerts/signing-gateway.rules.yml) and the guide's runbook.

docs/operations.md lists the alerts of the rules file ("Alerts worth setting") and says what to
do when each fires ("When an alert fires"), one bullet per alert, which a rule's `runbook`
annotation names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "alerts" / "signing-gateway.rules.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
#: Where a rule's `runbook` annotation points: the guide's section, then the bullet's title.
RUNBOOK = re.compile(r"^docs/operations\.md#when-an-alert-fires \(([^)]+)\)$")
#: The comparison an alert's expression ends with: its operator and threshold.
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)([^=!<>]*)$")


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule of the file."""

    name: str
    expr: str
    for_: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def comparison(self) -> tuple[str, str, str]:
        """The expression at the comparison it ends with: what it compares, operator, threshold."""
        match = _COMPARISON.search(self.expr)
        if match is None:
            raise ValueError(f"{self.name} ends in no comparison: {self.expr}")
        return self.expr[: match.start()].strip(), match.group(1), match.group(2).strip()

    @property
    def threshold(self) -> float:
        """The number the expression is compared with (`14 * 86400` multiplied out)."""
        return math.prod(float(factor) for factor in self.comparison[2].split("*"))


def alert_rules(path: Path = RULES) -> list[AlertRule]:
    """Every alerting rule of every group of `path`, in the file's order."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        AlertRule(
            name=rule["alert"],
            expr=" ".join(rule["expr"].split()),
            for_=rule.get("for", "0m"),
            labels=rule.get("labels", {}),
            annotations=rule.get("annotations", {}),
        )
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def guide_section(title: str, end: str) -> str:
    """The text of docs/operations.md from `title` up to `end`."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(title)
    return text[start : text.index(end, start)]


def runbook_bullets() -> dict[str, str]:
    """The runbook's bullets by their bold title ("Error ratio", ...), each with its sub-items."""
    text = guide_section("### When an alert fires", "## Logs")
    bullets = {}
    for chunk in re.split(r"^- \*\*", text, flags=re.MULTILINE)[1:]:
        title, _, body = chunk.partition(".**")
        bullets[title] = body
    return bullets
