"""The official EU DCC fixtures, judged by the JSON schema (the oracle) and by the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from domain_testdata import (
    DCC_DIR,
    combined_schema_validator,
    errors_of,
    fixture_files,
    load_json,
    requires_shared,
    schema_accepts,
    split_schema_validator,
    validate,
)
from jsonschema import Draft202012Validator

from signing_gateway.domain import EuRequest

pytestmark = requires_shared

VALID = fixture_files("schema-tests", "valid") + fixture_files("examples")
INVALID = fixture_files("schema-tests", "invalid")

# Fixtures the schema accepts but this gateway refuses, each with the rule(s) that refuse it:
#  - uvci_prefix: the gateway issues only the canonical "URN:UVCI:" form; these use the bare
#    "01:NL:..." form or '/' and '#' as separators.
#  - value_set_unknown on co: "UNHCR" is an issuer, not a code of the country value set.
#  - value_set_unknown on t.ma: device "532" is not in the bundled test-device list
#    (test-manf-example.json of eu-dcc-valuesets 2.12.0).
#  - rfc3339_datetime: "+02" and "+0200" offsets are ISO 8601 but not RFC 3339.
_PREFIX = "uvci_prefix"
STRICTER: dict[str, set[tuple[str, tuple[str | int, ...]]]] = {
    "schema-tests/valid/R-dates1.json": {
        ("value_set_unknown", ("dcc", "r", 0, "co")),
        (_PREFIX, ("dcc", "r", 0, "ci")),
    },
    "schema-tests/valid/R-dates2.json": {
        ("value_set_unknown", ("dcc", "r", 0, "co")),
        (_PREFIX, ("dcc", "r", 0, "ci")),
    },
    "schema-tests/valid/R-min-data.json": {(_PREFIX, ("dcc", "r", 0, "ci"))},
    "schema-tests/valid/T-naat-min-data.json": {(_PREFIX, ("dcc", "t", 0, "ci"))},
    "schema-tests/valid/T-rat-dates1.json": {
        ("value_set_unknown", ("dcc", "t", 0, "ma")),
        ("rfc3339_datetime", ("dcc", "t", 0, "sc")),
        ("value_set_unknown", ("dcc", "t", 0, "co")),
        (_PREFIX, ("dcc", "t", 0, "ci")),
    },
    "schema-tests/valid/T-rat-dates2.json": {
        ("value_set_unknown", ("dcc", "t", 0, "ma")),
        ("rfc3339_datetime", ("dcc", "t", 0, "sc")),
        (_PREFIX, ("dcc", "t", 0, "ci")),
    },
    "schema-tests/valid/T-rat-dates3.json": {("value_set_unknown", ("dcc", "t", 0, "ma"))},
    "schema-tests/valid/T-rat-min-data.json": {
        ("value_set_unknown", ("dcc", "t", 0, "ma")),
        (_PREFIX, ("dcc", "t", 0, "ci")),
    },
    "schema-tests/valid/V-dates1.json": {
        ("value_set_unknown", ("dcc", "v", 0, "co")),
        (_PREFIX, ("dcc", "v", 0, "ci")),
    },
    "schema-tests/valid/V-dates2.json": {(_PREFIX, ("dcc", "v", 0, "ci"))},
    "schema-tests/valid/V-min-data.json": {(_PREFIX, ("dcc", "v", 0, "ci"))},
    "examples/test/simple-rat.json": {("value_set_unknown", ("dcc", "t", 0, "ma"))},
}

# Why each invalid fixture is invalid, as the model reports it.
INVALID_BECAUSE: dict[str, set[tuple[str, tuple[str | int, ...]]]] = {
    "schema-tests/invalid/empty.json": {("group_entry_count", ("dcc", "v"))},
    "schema-tests/invalid/invalid_dob.json": {("date_of_birth", ("dcc", "dob"))},
    "schema-tests/invalid/invalid_dob2.json": {("date_of_birth", ("dcc", "dob"))},
    "schema-tests/invalid/invalid_vac.json": {("dose_count", ("dcc", "v", 0, "dn"))},
    "schema-tests/invalid/missing_dob.json": {("missing", ("dcc", "dob"))},
    "schema-tests/invalid/missing_fnt_gnt.json": {("name_missing", ("dcc", "nam"))},
}


def _name(path: Path) -> str:
    return path.relative_to(DCC_DIR).as_posix()


def test_fixture_folders_are_present():
    """The shared reference data holds the fixture sets the oracle tests rely on."""
    assert len(VALID) >= 30
    assert len(INVALID) >= 6
    assert set(STRICTER) <= {_name(p) for p in VALID}
    assert set(INVALID_BECAUSE) == {_name(p) for p in INVALID}


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_oracle_accepts_valid_fixture(path):
    """The combined and the split official schema both accept every valid fixture."""
    payload = load_json(path)
    assert list(combined_schema_validator().iter_errors(payload)) == []
    assert list(split_schema_validator().iter_errors(payload)) == []


@pytest.mark.parametrize("path", INVALID, ids=_name)
def test_oracle_rejects_invalid_fixture(path):
    """The combined and the split official schema both reject every invalid fixture."""
    payload = load_json(path)
    assert not schema_accepts(payload)
    assert not split_schema_validator().is_valid(payload)


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_model_accepts_valid_fixture_or_names_the_stricter_rule(path):
    """A valid fixture is accepted, unless a listed stricter rule refuses it (and only that)."""
    body = {"dcc": load_json(path)}
    expected = STRICTER.get(_name(path))
    if expected is None:
        validate(body)
    else:
        assert errors_of(body) == expected


@pytest.mark.parametrize("path", INVALID, ids=_name)
def test_model_rejects_invalid_fixture_for_the_right_reason(path):
    """Every invalid fixture is refused, at the location of the defect."""
    assert errors_of({"dcc": load_json(path)}) == INVALID_BECAUSE[_name(path)]


@pytest.mark.parametrize("path", [p for p in VALID if _name(p) not in STRICTER], ids=_name)
def test_signing_payload_round_trips_fixture(path):
    """The payload to sign of an accepted fixture is the fixture itself, with the same types."""
    payload = load_json(path)
    signed = validate({"dcc": payload}).dcc.signing_payload()
    assert signed == payload
    assert list(signed) == list(payload)
    entry_key = next(k for k in ("v", "t", "r") if k in payload)
    for key, value in payload[entry_key][0].items():
        assert type(signed[entry_key][0][key]) is type(value)


@pytest.mark.parametrize("path", [p for p in VALID if _name(p) not in STRICTER], ids=_name)
def test_published_schema_accepts_fixture_the_model_accepts(path):
    """The request schema the gateway publishes is no stricter than the model on any fixture."""
    validator = Draft202012Validator(
        EuRequest.model_json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors({"dcc": load_json(path)})) == []
