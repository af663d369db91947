"""Shared expectations for the EU credential tests, and helpers that verify against them.

A fixed now and the exp asked for; ``verify`` checks a credential against them, ``reason_of``
names the reason one is refused with.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import base45
import cbor2
import pytest

from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.hcert import VerifiedEuCredential, verify_eu_credential
from signing_gateway.verification.trust import EuTrustStore
from tests.support.credentials import Hc1Spec, sample_dcc, wrap_cose

NOW = datetime.now(UTC).replace(microsecond=0)
EXP = int((NOW + timedelta(days=30)).timestamp())
IAT = int(NOW.timestamp())
SKEW = timedelta(minutes=2)


def spec(**changes: Any) -> Hc1Spec:
    """A valid credential spec with ``changes`` applied."""
    base = Hc1Spec(dcc=sample_dcc(), exp=EXP, iat=IAT)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def someone_else() -> dict[str, Any]:
    """A DCC for another person, signed alongside the requested one in the ambiguous cases."""
    other = sample_dcc()
    other["nam"] = {"fn": "Else", "fnt": "ELSE", "gn": "Someone", "gnt": "SOMEONE"}
    other["dob"] = "1999-01-01"
    return other


def verify(
    text: str,
    trust: EuTrustStore,
    *,
    proof: str,
    key_usage: str = "vaccination",
    dcc: dict[str, Any] | None = None,
    exp: int = EXP,
    now: datetime = NOW,
) -> VerifiedEuCredential:
    """Verify ``text`` against the default expectations, overridable per test."""
    return verify_eu_credential(
        text,
        trust=trust,
        key_usage=key_usage,
        expected_dcc=dcc if dcc is not None else sample_dcc(),
        expected_exp=exp,
        proof_identifier=proof,
        now=now,
        max_clock_skew=SKEW,
    )


def reason_of(text: str, trust: EuTrustStore, **kwargs: Any) -> str:
    """The reason verification refuses ``text`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        verify(text, trust, **kwargs)
    return caught.value.reason


def cose_of(text: str) -> bytes:
    """The encoded COSE message inside an ``HC1:`` text."""
    return zlib.decompress(base45.b45decode(text[4:]))


def payload_of(text: str) -> bytes:
    """The signed payload bytes of a credential, as they travel."""
    payload: bytes = cbor2.loads(cose_of(text)).value[2]
    return payload


def with_signature(text: str, signature: Any) -> str:
    """``text`` with its COSE signature replaced by ``signature`` (bytes or any CBOR value)."""
    protected, unprotected, payload, _ = cbor2.loads(cose_of(text)).value
    cose = cbor2.CBORTag(18, [protected, dict(unprotected), payload, signature])
    return wrap_cose(cbor2.dumps(cose))
