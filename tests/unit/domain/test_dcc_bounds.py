"""Every string a DCC signs as given is bounded, and the bounds keep the credential readable."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from domain_testdata import dcc, dcc_with_entry, errors_of, validate
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from fake_signer import hcert
from signing_gateway.domain import EuRequest
from signing_gateway.signers.eu import (
    MAX_CREDENTIAL_LENGTH,
    MAX_CREDENTIAL_REQUEST_BYTES,
    credential_request,
)

T0 = ("dcc", "t", 0)
SC = (*T0, "sc")
SC_AT_NINE_DIGITS = "2026-11-22T09:15:00.123456789+01:00"
EXPIRATION = datetime(2027, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("digits", [1, 6, 9])
def test_a_sample_time_of_up_to_nine_fraction_digits_is_accepted(digits):
    """1 to 9 fraction digits of sc are taken, at the longest with an offset (35 characters)."""
    sc = "2026-11-22T09:15:00." + "1" * digits + "+01:00"
    assert validate({"dcc": dcc_with_entry("t", sc=sc)}).dcc.entry.sample_collected == sc
    assert len(SC_AT_NINE_DIGITS) == 35
    validate({"dcc": dcc_with_entry("t", sc=SC_AT_NINE_DIGITS)})


@pytest.mark.parametrize(
    ("sc", "error_type"),
    [
        ("2026-11-22T09:15:00.1234567891Z", "rfc3339_datetime"),
        ("2026-11-22T09:15:00.1234567891+01:00", "datetime_too_long"),
        ("2026-11-22T09:15:00." + "1" * 5000 + "Z", "datetime_too_long"),
        ("2026-11-22T09:15:00." + "1" * 60_000 + "Z", "datetime_too_long"),
    ],
    ids=["10-digits", "36-characters", "5000-digits", "60000-digits"],
)
def test_a_sample_time_of_more_than_nine_fraction_digits_is_refused(sc, error_type):
    """More than 9 fraction digits in sc is refused at sc (verifier apps cannot read them)."""
    assert errors_of({"dcc": dcc_with_entry("t", sc=sc)}) == {(error_type, SC)}


def test_a_long_sample_time_is_named_by_its_length_not_repeated():
    """The refusal of a 60,000-digit sc says its length and does not echo the value."""
    sc = "2026-11-22T09:15:00." + "7" * 60_000 + "Z"
    with pytest.raises(ValidationError) as info:
        validate({"dcc": dcc_with_entry("t", sc=sc)})
    [error] = info.value.errors()
    assert error["msg"] == ("Must be at most 35 characters (at most 9 fraction digits), got 60021")


@pytest.mark.parametrize("version", ["1.3.0", "1.3.9", "1.3.99", "1.3.999"])
def test_a_patch_number_of_up_to_three_digits_is_accepted(version):
    """A ver of 1.3.0 to 1.3.999 is taken."""
    assert validate({"dcc": dcc(ver=version)}).dcc.version == version


@pytest.mark.parametrize("version", ["1.3.1000", "1.3.0000", "1.3." + "1" * 60_000])
def test_a_patch_number_of_four_digits_or_more_is_refused(version):
    """A ver longer than 1.3.999 is refused at ver, a 60,000-digit one named by its length."""
    assert errors_of({"dcc": dcc(ver=version)}) == {("dcc_version", ("dcc", "ver"))}


def test_the_json_schema_shows_the_bounds_of_ver_and_sc():
    """Pin that the published schema refuses the over-long ver and sc the gateway refuses."""
    validator = Draft202012Validator(EuRequest.model_json_schema())
    assert validator.is_valid({"dcc": dcc(ver="1.3.999")})
    assert not validator.is_valid({"dcc": dcc(ver="1.3.1000")})
    assert validator.is_valid({"dcc": dcc_with_entry("t", sc=SC_AT_NINE_DIGITS)})
    assert not validator.is_valid(
        {"dcc": dcc_with_entry("t", sc="2026-11-22T09:15:00.1234567891Z")}
    )


def _largest_accepted(group: str) -> dict[str, object]:
    """A DCC with every free text at 80 four-byte characters, and a UVCI of 80 characters."""
    wide = "\U00020000" * 80  # a CJK ideograph: a letter, 4 bytes in UTF-8
    uvci = "URN:UVCI:" + "A" * 71
    texts = {"is": wide, "ci": uvci}
    if group == "t":
        texts |= {"nm": wide, "tc": wide, "sc": SC_AT_NINE_DIGITS}
    payload = dcc_with_entry(group, **texts)
    payload["nam"] = {"fn": wide, "gn": wide, "fnt": "A" * 80, "gnt": "B" * 80}
    payload["ver"] = "1.3.999"
    return payload


@pytest.mark.parametrize("group", ["v", "t", "r"])
def test_the_largest_dcc_the_models_accept_is_well_within_the_signing_bound(group):
    """No accepted DCC comes near the encoded-request bound: the bound refuses nothing valid."""
    request = validate({"dcc": _largest_accepted(group)})
    encoded = credential_request(
        key_usage=request.effective_key_usage().value,
        expiration_time=EXPIRATION,
        dcc=request.dcc.signing_payload(),
    )
    assert len(encoded.content) < MAX_CREDENTIAL_REQUEST_BYTES // 2


def test_a_request_at_the_signing_bound_gives_a_credential_within_the_wire_limit():
    """A DCC of the least compressible text filling the bound is signed into a credential that fits.

    Printable ASCII drawn at random carries the most information per byte that JSON text can
    (zlib saves little of it); the signer here is the fake one, ES256.
    """
    payload = dcc_with_entry("v", **{"is": ""})
    room = MAX_CREDENTIAL_REQUEST_BYTES - len(
        credential_request(key_usage="vaccination", expiration_time=EXPIRATION, dcc=payload).content
    )
    alphabet = [chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\']
    drawn = random.Random(0)  # noqa: S311 - the same text every run, no secret
    payload["v"][0]["is"] = "".join(drawn.choices(alphabet, k=room))
    content = credential_request(key_usage="vaccination", expiration_time=EXPIRATION, dcc=payload)
    assert len(content.content) == MAX_CREDENTIAL_REQUEST_BYTES
    signed = hcert.issue_credential(
        key=ec.generate_private_key(ec.SECP256R1()),
        kid=b"12345678",
        issuer="NL",
        issued_at=int(EXPIRATION.timestamp()) - 86_400,
        expires_at=int(EXPIRATION.timestamp()),
        dcc=payload,
    )
    assert len(signed.credential) <= MAX_CREDENTIAL_LENGTH // 2
