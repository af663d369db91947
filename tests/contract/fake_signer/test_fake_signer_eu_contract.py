"""EU signer wire: credentials decoded and verified by an independent path (pycose + cbor2)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time

import cbor2
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256

from tests.contract.fake_signer.signer_wire import (
    DCC,
    b64d,
    cose_parts,
    dsc_for,
    eu_body,
    future_rfc3339,
    nested_arrays,
    published,
    stats,
    verify_with_pycose,
)

EKU = {
    "test": "1.3.6.1.4.1.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.1847.2021.1.3",
}


_SOON = future_rfc3339()


def _wire(**changes: object) -> bytes:
    """A `/get_credential` body, valid unless `changes` say otherwise (None drops a field)."""
    body = {"keyUsage": "test", "expirationTime": _SOON, "dcc": {}} | changes
    return orjson.dumps({name: value for name, value in body.items() if value is not None})


@pytest.mark.parametrize("usage", ["vaccination", "test", "recovery"])
async def test_credential_round_trip_verifies_independently(client, usage):
    """A credential verifies against the DSC from /keys and carries kid, claims and payload."""
    before = int(time.time())
    expires = future_rfc3339()
    response = await client.post("/get_credential", json=eu_body(usage, expires))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"credential", "proofIdentifier"}
    keys = await published(client)
    entry, dsc = dsc_for(keys, usage)
    assert entry["alg"] == "ES256"

    assert verify_with_pycose(body["credential"], dsc)
    protected, unprotected, payload, signature = cose_parts(body["credential"])
    assert protected == {
        1: -7,
        4: hashlib.sha256(dsc.public_bytes(serialization.Encoding.DER)).digest()[:8],
    }
    assert protected[4] == b64d(entry["kid"])
    assert unprotected == {}
    assert len(signature) == 64
    claims = cbor2.loads(payload)
    assert set(claims) == {1, 4, 6, -260}
    assert claims[1] == "NL"
    assert claims[4] == int(dt.datetime.fromisoformat(expires).timestamp())
    assert before <= claims[6] <= int(time.time())
    assert claims[-260] == {1: DCC}
    expected_proof = base64.b64encode(hashlib.sha256(signature).digest()[:16]).decode()
    assert body["proofIdentifier"] == expected_proof


async def test_dcc_is_signed_as_the_issuance_server_reads_it(client):
    """Members left out are signed empty, a test's empty nm left out, unknown members dropped."""
    entry = {
        "tg": "840539006",
        "tt": "LP6464-4",
        "nm": "",
        "sc": "2021-05-29T10:00:00Z",
        "tr": "260415000",
        "co": "NL",
        "is": "Ministry of Health Welfare and Sport",
        "ci": "URN:UVCI:01:NL:TEST0001",
        "extra": "dropped",
    }
    dcc = {"ver": "1.3.0", "nam": {"fnt": "DE<VRIES", "x": 1}, "dob": "1964", "t": [entry]}
    body = {"keyUsage": "test", "expirationTime": future_rfc3339(), "dcc": dcc}
    response = await client.post("/get_credential", json=body)
    assert response.status_code == 200, response.text
    signed = cbor2.loads(cose_parts(response.json()["credential"])[2])[-260][1]
    assert signed == {
        "ver": "1.3.0",
        "dob": "1964",
        "nam": {"fn": "", "fnt": "DE<VRIES", "gn": "", "gnt": ""},
        "t": [
            {
                **{k: v for k, v in entry.items() if k not in {"nm", "extra"}},
                "tc": "",
            }
        ],
    }


async def test_what_a_dcc_leaves_out_is_signed_as_the_records_hold_it(client):
    """Left out, ver and dob are signed "" and nam null; a null entry null, no empty group.

    A member of the DCC the records have no place for is dropped at the top as in an entry.
    """
    dcc = {"v": [], "t": [None], "r": None, "extra": {"fn": "X"}}
    response = await client.post("/get_credential", content=_wire(dcc=dcc))
    assert response.status_code == 200, response.text
    signed = cbor2.loads(cose_parts(response.json()["credential"])[2])[-260][1]
    assert signed == {"ver": "", "dob": "", "nam": None, "t": [None]}


async def test_dose_counts_are_read_as_64_bit_integers(client):
    """Pin the bounds of the records' integers: -2**63 and 2**63 - 1 are signed as sent."""
    dcc = {**DCC, "v": [{**DCC["v"][0], "dn": 2**63 - 1, "sd": -(2**63)}]}
    response = await client.post("/get_credential", content=_wire(keyUsage="vaccination", dcc=dcc))
    assert response.status_code == 200, response.text
    signed = cbor2.loads(cose_parts(response.json()["credential"])[2])[-260][1]
    assert signed == dcc


@pytest.mark.parametrize(
    ("dcc", "why"),
    [
        ({"ver": 1}, "dcc.ver must be a string"),
        ({"nam": ["X"]}, "dcc.nam must be an object"),
        ({"v": {}}, "dcc.v must be an array"),
        ({"v": [{"dn": "2"}]}, "dcc.v[0].dn must be a whole number"),
        ({"v": [{"dn": 2.0}]}, "dcc.v[0].dn must be a whole number"),
        ({"v": [{"dn": True}]}, "dcc.v[0].dn must be a whole number"),
        ({"v": [{"sd": 2**63}]}, "dcc.v[0].sd must be a whole number"),
        ({"r": [{"tg": 1}]}, "dcc.r[0].tg must be a string"),
    ],
)
async def test_dcc_members_of_the_wrong_type_are_refused(client, dcc, why):
    """A DCC member that the issuance server's records cannot hold is refused, not signed."""
    response = await client.post("/get_credential", content=_wire(dcc=dcc))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert why in response.text


async def test_members_other_than_the_three_are_ignored(client):
    """Pin that a body member the contract does not name is ignored, as the real server does."""
    body = {**eu_body("vaccination", future_rfc3339()), "dgc": {"ver": "1.0.0"}, "extra": 1}
    response = await client.post("/get_credential", json=body)
    assert response.status_code == 200, response.text
    signed = cbor2.loads(cose_parts(response.json()["credential"])[2])[-260][1]
    assert signed["ver"] == DCC["ver"]


async def test_dsc_chains_to_csca_with_usage_eku(client):
    """Every DSC is signed by the published CSCA, carries its usage's EKU and lasts ~2 years."""
    keys = await published(client)
    (csca_der,) = keys["csca"]
    csca = x509.load_der_x509_certificate(b64d(csca_der))
    assert csca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert csca.issuer == csca.subject
    assert {tuple(k["keyUsage"]) for k in keys["eu"]} == {
        ("vaccination",),
        ("test",),
        ("recovery",),
    }
    for usage, oid in EKU.items():
        _, dsc = dsc_for(keys, usage)
        assert dsc.issuer == csca.subject
        public_key = csca.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(dsc.signature, dsc.tbs_certificate_bytes, ec.ECDSA(SHA256()))
        eku = dsc.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert [o.dotted_string for o in eku] == [oid]
        assert dsc.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=700)


async def test_certificates_validity_and_key_usages(client):
    """DSCs last 730 days, all backdated 1 h; the CSCA only certifies, DSCs only sign."""
    keys = await published(client)
    csca = x509.load_der_x509_certificate(b64d(keys["csca"][0]))
    dscs = [dsc_for(keys, usage)[1] for usage in EKU]
    now = dt.datetime.now(dt.UTC)
    assert csca.not_valid_after_utc - csca.not_valid_before_utc == dt.timedelta(days=3650, hours=1)
    for certificate in [csca, *dscs]:
        backdated = now - certificate.not_valid_before_utc
        assert dt.timedelta(minutes=59) < backdated < dt.timedelta(minutes=70), backdated
    for dsc in dscs:
        assert dsc.not_valid_after_utc - dsc.not_valid_before_utc == dt.timedelta(days=730, hours=1)
    constraints = csca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    usage = csca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    for dsc in dscs:
        assert not dsc.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usage = dsc.extensions.get_extension_for_class(x509.KeyUsage).value
        assert (usage.digital_signature, usage.key_cert_sign) == (True, False)


async def test_expiration_up_to_the_dsc_end_is_signed(client):
    """An expirationTime at the DSC's last valid second is signed; a second later is refused."""
    _, dsc = dsc_for(await published(client), "test")
    last = dsc.not_valid_after_utc
    for when, status in ((last, 200), (last + dt.timedelta(seconds=1), 500)):
        text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        response = await client.post("/get_credential", content=_wire(expirationTime=text))
        assert response.status_code == status, (text, response.text)


async def test_tampered_credential_does_not_verify(client):
    """The independent verifier is not a rubber stamp: another DSC's key rejects the credential."""
    body = (await client.post("/get_credential", json=eu_body("vaccination"))).json()
    _, other = dsc_for(await published(client), "test")
    assert not verify_with_pycose(body["credential"], other)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "bad JSON"),
        (_wire(keyUsage="booster"), "usage"),
        (_wire(keyUsage="Vaccination"), "usage in another case"),
        (_wire(expirationTime="next year"), "time"),
        (_wire(expirationTime=_SOON.removesuffix("Z")), "no offset"),
        (_wire(expirationTime="2020-01-01T00:00:00Z"), "past"),
        (_wire(expirationTime=f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"), "now"),
        (_wire(expirationTime="2099-01-01T00:00:00Z"), "after DSC"),
        (_wire(dcc=[]), "dcc list"),
        (_wire(dcc=None), "missing dcc"),
        (b"[1, 2]", "not an object"),
        (_wire(keyUsage=["test"]), "usage not a string"),
        (_wire(expirationTime=1900000000), "time not a string"),
    ],
)
async def test_wire_input_errors_are_500_plain_text(client, raw, why):
    """Bad input is refused with a plain-text 500, the real issuance server's only error status."""
    response = await client.post("/get_credential", content=raw)
    assert response.status_code == 500, why
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text


async def test_key_usage_nested_as_deep_as_json_allows_is_a_counted_refusal(client):
    """A keyUsage of arrays nested 1,000 deep is refused as any other, not a crash uncounted."""
    raw = _wire(keyUsage=0).replace(b'"keyUsage":0', b'"keyUsage":' + nested_arrays())
    response = await client.post("/get_credential", content=raw)
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("keyUsage must be a string"), response.text
    assert (await stats(client))["totals"] == {"get_credential": {"bad_request": 1}}


# Relative to now, so every form is in the future and within the DSC whenever the suite runs.
_AT = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
# strftime formats of _AT that RFC 3339 (as the real signer's Go parser reads it) does not have.
_NOT_RFC3339 = {
    "basic-format": "%Y%m%dT%H%M%SZ",
    "week-date": "%G-W%V-%uT%H:%M:%SZ",
    "no-minutes": "%Y-%m-%dT%HZ",
    "no-seconds": "%Y-%m-%dT%H:%MZ",
    "offset-without-colon": "%Y-%m-%dT%H:%M:%S+0000",
    "offset-hours-only": "%Y-%m-%dT%H:%M:%S+00",
    "space-separator": "%Y-%m-%d %H:%M:%SZ",
    "lower-case": "%Y-%m-%dt%H:%M:%Sz",
    "lower-case-t": "%Y-%m-%dt%H:%M:%SZ",
    "leap-second": "%Y-%m-%dT23:59:60Z",
    "offset-out-of-range": "%Y-%m-%dT%H:%M:%S+24:00",
    # Python's fromisoformat reads it as +03:00; Go's RFC 3339 parser refuses it.
    "offset-minutes-out-of-range": "%Y-%m-%dT%H:%M:%S+02:60",
    "empty-fraction": "%Y-%m-%dT%H:%M:%S.Z",
    "date-only": "%Y-%m-%d",
}
_RFC3339 = {
    "utc": "%Y-%m-%dT%H:%M:%SZ",
    "long-fraction": "%Y-%m-%dT%H:%M:%S.123456789Z",
    "late-fraction": "%Y-%m-%dT%H:%M:%S.999Z",
    "positive-offset": "%Y-%m-%dT%H:%M:%S+02:00",
    "unknown-local-offset": "%Y-%m-%dT%H:%M:%S-00:00",
}


@pytest.mark.parametrize("form", _NOT_RFC3339.values(), ids=_NOT_RFC3339.keys())
async def test_expiration_time_must_be_rfc3339(client, form):
    """ISO 8601 forms RFC 3339 lacks, lower case and out-of-range parts are refused (500)."""
    text = _AT.strftime(form)
    response = await client.post("/get_credential", content=_wire(expirationTime=text))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert "expirationTime" in response.text


@pytest.mark.parametrize("form", _RFC3339.values(), ids=_RFC3339.keys())
async def test_expiration_time_in_rfc3339_forms_is_signed(client, form):
    """Every RFC 3339 form the real signer reads is signed, its exp the instant floored."""
    text = _AT.strftime(form)
    response = await client.post("/get_credential", content=_wire(expirationTime=text))
    assert response.status_code == 200, response.text
    _, _, payload, _ = cose_parts(response.json()["credential"])
    expected = dt.datetime.fromisoformat(text.replace(".123456789", ".123456")).timestamp()
    assert cbor2.loads(payload)[4] == int(expected)


async def test_get_credential_only_accepts_post(client):
    """GET on the signing endpoint is 405."""
    assert (await client.get("/get_credential")).status_code == 405


@pytest.mark.parametrize(
    ("role", "eu", "domestic"), [("eu", True, False), ("domestic", False, True)]
)
def test_keys_and_routes_follow_the_role(fake_signer_factory, role, eu, domestic):
    """Role eu publishes EU keys and routes only; role domestic the domestic ones only."""
    import httpx  # noqa: PLC0415 - sync client for a sync test

    signer = fake_signer_factory("--role", role, "--country", "BE")
    with httpx.Client(base_url=signer.base_url, timeout=10) as http:
        keys = http.get("/keys").json()
        assert bool(keys["eu"]) is eu
        assert bool(keys["csca"]) is eu
        assert bool(keys["domestic"]) is domestic
        eu_status = http.post("/get_credential", json=eu_body()).status_code
        static = http.post(
            "/issue_static", content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert (eu_status == 200) is eu
        assert (static.status_code == 404) is eu
        if eu:
            credential = http.post("/get_credential", json=eu_body()).json()["credential"]
            assert cbor2.loads(cose_parts(credential)[2])[1] == "BE"
            country = x509.NameOID.COUNTRY_NAME
            for der in [*keys["csca"], *(entry["certificate"] for entry in keys["eu"])]:
                certificate = x509.load_der_x509_certificate(b64d(der))
                (name,) = certificate.subject.get_attributes_for_oid(country)
                assert name.value == "BE"
