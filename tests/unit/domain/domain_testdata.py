"""Test data and helpers for the domain tests: the shared DCC reference data and sample requests.

The official EU DCC schema and its fixtures live in ``../shared/dcc`` next to the repository; the
tests that use them are skipped (with the reason) when that folder is absent.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry, Resource

from signing_gateway.domain import EuRequest

REPO_ROOT = Path(__file__).resolve().parents[3]
DCC_DIR = REPO_ROOT.parent / "shared" / "dcc"
requires_shared = pytest.mark.skipif(
    not DCC_DIR.is_dir(), reason=f"EU DCC reference data not found at {DCC_DIR}"
)

# A fixed "now" so the tests do not drift with the calendar.
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
CONTEXT = {"now": NOW}


def load_json(path: Path) -> Any:
    """Read one JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_files(*parts: str) -> list[Path]:
    """List the JSON fixtures under the shared DCC folder (empty when it is absent)."""
    folder = DCC_DIR.joinpath(*parts)
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


@cache
def combined_schema_validator() -> Draft202012Validator:
    """The official combined schema, with format assertions on (dates are checked too)."""
    schema = load_json(DCC_DIR / "schema" / "DCC.combined-schema.json")
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def split_schema_validator() -> Draft202012Validator:
    """The official schema in its four parts, cross-file refs resolved through a registry."""
    resources = [
        Resource.from_contents(load_json(path))
        for path in (DCC_DIR / "schema").glob("DCC.*.json")
        if "combined" not in path.name
    ]
    registry: Registry[Any] = Registry().with_resources((r.id(), r) for r in resources if r.id())
    root = load_json(DCC_DIR / "schema" / "DCC.schema.json")
    return Draft202012Validator(
        root, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def schema_accepts(dcc: Any) -> bool:
    """The oracle's verdict on a DCC payload."""
    return combined_schema_validator().is_valid(dcc)


def validate(body: Any) -> EuRequest:
    """Validate a request body the way the API does, with the pinned clock."""
    return EuRequest.model_validate(body, context=CONTEXT)


def model_accepts(dcc: Any) -> bool:
    """The model's verdict on a DCC payload (wrapped in a minimal request)."""
    try:
        validate({"dcc": dcc})
    except ValidationError:
        return False
    return True


def errors_of(body: Any) -> set[tuple[str, tuple[str | int, ...]]]:
    """Validate and return the (type, loc) of every error; fails the test if it validates."""
    with pytest.raises(ValidationError) as info:
        validate(body)
    return {(error["type"], tuple(error["loc"])) for error in info.value.errors()}


UVCI = "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1"
NAME = {"fn": "Smith-Jones", "fnt": "SMITH<JONES", "gn": "Charles Edward", "gnt": "CHARLES<EDWARD"}
VACCINATION = {
    "tg": "840539006",
    "vp": "1119349007",
    "mp": "EU/1/20/1528",
    "ma": "ORG-100030215",
    "dn": 3,
    "sd": 2,
    "dt": "2022-01-10",
    "co": "NL",
    "is": "Ministry of Health Welfare and Sport",
    "ci": UVCI,
}
TEST = {
    "tg": "840539006",
    "tt": "LP217198-3",
    "ma": "1232",
    "sc": "2026-11-22T09:15:00+01:00",
    "tr": "260415000",
    "tc": "Test Centre Utrecht",
    "co": "NL",
    "is": "Ministry of Health Welfare and Sport",
    "ci": UVCI,
}
RECOVERY = {
    "tg": "840539006",
    "fr": "2026-11-01",
    "co": "NL",
    "is": "Ministry of Health Welfare and Sport",
    "df": "2026-11-12",
    "du": "2027-04-30",
    "ci": UVCI,
}
ENTRIES = {"v": VACCINATION, "t": TEST, "r": RECOVERY}


def dcc(group: str = "v", **changes: Any) -> dict[str, Any]:
    """A valid DCC of the given group (a fresh copy), with top-level fields replaced."""
    payload: dict[str, Any] = {
        "ver": "1.3.0",
        "nam": copy.deepcopy(NAME),
        "dob": "1964-08-12",
        group: [copy.deepcopy(ENTRIES[group])],
    }
    payload.update(changes)
    return payload


def dcc_with_entry(group: str, **changes: Any) -> dict[str, Any]:
    """A valid DCC whose single entry has the given fields replaced (value None removes one)."""
    payload = dcc(group)
    entry = payload[group][0]
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return payload


def dcc_with_name(**changes: Any) -> dict[str, Any]:
    """A valid DCC whose name has the given fields replaced (value None removes one)."""
    payload = dcc()
    for key, value in changes.items():
        if value is None:
            payload["nam"].pop(key, None)
        else:
            payload["nam"][key] = value
    return payload


def dcc_born(dob: str) -> dict[str, Any]:
    """A valid vaccination DCC of a holder born on `dob`, vaccinated on the latest day allowed.

    The dose is dated today in UTC+14 (see NOW): after every date of birth the model takes.
    """
    payload = dcc_with_entry("v", dt="2026-11-24")
    payload["dob"] = dob
    return payload
