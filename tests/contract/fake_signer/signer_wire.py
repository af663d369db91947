"""Request bodies and independent decoding helpers for fake-signer contract tests."""

from __future__ import annotations

import base64
import datetime as dt
import time
import zlib
from typing import Any

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

DEFAULT_CONTROL = {
    "latencyMs": 0,
    "jitterMs": 0,
    "latencyDistribution": "uniform",
    "capacity": None,
    "overflow": "queue",
    "errorRate": 0,
    "fault": None,
}

DCC: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU", "gn": "Erika", "gnt": "ERIKA"},
    "dob": "1964-08-12",
    "v": [
        {
            "tg": "840539006",
            "vp": "1119349007",
            "mp": "EU/1/20/1528",
            "ma": "ORG-100030215",
            "dn": 2,
            "sd": 2,
            "dt": "2021-05-29",
            "co": "NL",
            "is": "Ministry of Health Welfare and Sport",
            "ci": "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1",
        }
    ],
}

ATTRIBUTES = {
    "isSpecimen": "0",
    "isPaperProof": "1",
    "validFrom": "1700000000",
    "validForHours": "24",
    "firstNameInitial": "E",
    "lastNameInitial": "M",
    "birthDay": "12",
    "birthMonth": "8",
}

JSON_HEADERS = {"Content-Type": "application/json"}


def future_rfc3339(days: int = 30) -> str:
    """An RFC 3339 UTC instant `days` ahead of now: always in the future, within the DSC."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def eu_body(usage: str = "vaccination", expiration: str | None = None) -> dict[str, Any]:
    """A valid /get_credential request body (expiring in 30 days unless given)."""
    return {"keyUsage": usage, "expirationTime": expiration or future_rfc3339(), "dcc": DCC}


#: Arrays nested this deep parse as JSON (orjson takes 1,024 levels of the whole body) but have
#: a repr past Python's recursion limit.
DEEP_NESTING = 1000


def nested_arrays(depth: int = DEEP_NESTING) -> bytes:
    """JSON text of empty arrays nested `depth` levels deep (no JSON encoder writes one)."""
    return b"[" * depth + b"]" * depth


def b64d(value: str) -> bytes:
    """Strict standard base64 decoding."""
    return base64.b64decode(value, validate=True)


def cose_of(credential: str) -> bytes:
    """The COSE bytes inside an HC1 credential, decoded with the base45 and zlib libraries."""
    assert credential.startswith("HC1:")
    return zlib.decompress(base45.b45decode(credential[4:]))


def cose_parts(credential: str) -> tuple[dict[int, Any], dict[Any, Any], bytes, bytes]:
    """(protected header, unprotected header, payload bytes, signature) of an HC1 credential."""
    tagged = cbor2.loads(cose_of(credential))
    assert isinstance(tagged, cbor2.CBORTag)
    assert tagged.tag == 18
    protected, unprotected, payload, signature = tagged.value
    return cbor2.loads(protected), unprotected, payload, signature


async def published(client):
    """The /keys document of the signer."""
    response = await client.get("/keys")
    assert response.status_code == 200
    return response.json()


def dsc_for(keys, usage):
    """The /keys entry and DSC certificate for a key usage."""
    (entry,) = [k for k in keys["eu"] if k["keyUsage"] == [usage]]
    return entry, x509.load_der_x509_certificate(b64d(entry["certificate"]))


def verify_with_pycose(credential: str, certificate: x509.Certificate) -> bool:
    """Verify the COSE signature with pycose, not with anything from fake_signer."""
    tagged = cbor2.loads(cose_of(credential))
    assert tagged.tag == 18
    # cbor2 6 decodes inside a tag to immutable tuple/frozendict, which pycose refuses: thaw them.
    protected, unprotected, payload, signature = tagged.value
    message = Sign1Message.from_cose_obj(
        [protected, dict(unprotected), payload, signature], allow_unknown_attributes=True
    )
    message.key = CoseKey.from_pem_public_key(
        certificate.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return message.verify_signature()


async def stats(client):
    """The /_stats document."""
    return (await client.get("/_stats")).json()


async def wait_for(predicate, client, within=5.0):
    """Poll /_stats until `predicate(stats)` holds or the deadline passes."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        current = await stats(client)
        if predicate(current):
            return current
    pytest.fail(f"stats never matched: {current}")
