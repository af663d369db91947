"""The catalogue of problem types: every type the source answers with, at its status."""

from __future__ import annotations

import re
from pathlib import Path

from signing_gateway.errors import PROBLEM_TYPES, GatewayError, ProblemType, SignerProblem
from tests.support.problem_types import SOURCE, answered_problem_types, answered_with_status


def _subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


def test_the_catalogue_is_every_type_the_source_answers_with():
    """Pin that `PROBLEM_TYPES` lists each type the source names where it answers, no other.

    `signer-failed` is the slug of `SignerProblem`, the base of the signer failures, which
    nothing raises as itself.
    """
    assert answered_problem_types() - {SignerProblem.slug} == set(PROBLEM_TYPES)
    raised = [
        path.name
        for path in SOURCE.rglob("*.py")
        if re.search(r"(?<!class )\bSignerProblem\(", path.read_text(encoding="utf-8"))
    ]
    assert raised == []


def test_each_error_class_answers_with_a_catalogued_status():
    """Each `GatewayError`'s status is the one the catalogue gives its type."""
    wrong = {
        cls.__name__: (cls.status, PROBLEM_TYPES[cls.slug].statuses)
        for cls in _subclasses(GatewayError)
        if cls is not SignerProblem and cls.status not in PROBLEM_TYPES[cls.slug].statuses
    }
    assert wrong == {}


def test_each_middleware_refusal_answers_with_a_catalogued_status():
    """Each refusal made with a literal status and type has the catalogue's status."""
    pairs = answered_with_status()
    assert len(pairs) >= 8
    assert {
        (name, status) for name, status in pairs if status not in PROBLEM_TYPES[name].statuses
    } == set()


ROOT = Path(__file__).resolve().parents[3]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: The guides that tell callers and operators what the gateway answers.
GUIDES = (
    "README.md",
    *(f"docs/{name}.md" for name in ("architecture", "operations", "resilience", "security")),
)
#: An answer as the guides write it: a 4xx or 5xx status, then its type (401 `stoken-invalid`).
_ANSWER = re.compile(r"\b([45]\d\d) `?([a-z]+(?:-[a-z]+)+)\b")


def test_the_architecture_table_gives_each_type_its_catalogued_statuses_and_when():
    """Pin docs/architecture.md's problem table to the catalogue: each type, statuses and when.

    Its names were held to the code, its status column by nothing, and its "when" column by
    nothing either: the simulation scheme's `commitment-proof-failed` reached the table, while
    `/openapi.json`, which says what the catalogue says, went on calling the type idemix-only.
    """
    rows = re.findall(
        r"^\| `([^`]+)` \| ([\d, ]+) \| (.*) \|$",
        ARCHITECTURE.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    documented = {
        name: ProblemType(tuple(int(s) for s in statuses.split(", ")), when)
        for name, statuses, when in rows
    }
    assert documented == PROBLEM_TYPES


def test_every_answer_the_guides_name_is_a_catalogued_type_at_its_status():
    """Pin "401 `stoken-invalid`" in the guides to the catalogue: a type answered at that status.

    operations.md called a session Redis evicted a caller's 401 `stoken-unknown`: the cause its
    audit record and metric give, which no answer carries as its type.
    """
    named = [
        (guide, int(status), name)
        for guide in GUIDES
        for status, name in _ANSWER.findall((ROOT / guide).read_text(encoding="utf-8"))
    ]
    assert len(named) >= 50
    assert [
        (guide, status, name)
        for guide, status, name in named
        if name not in PROBLEM_TYPES or status not in PROBLEM_TYPES[name].statuses
    ] == []
