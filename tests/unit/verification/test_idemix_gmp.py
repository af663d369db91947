"""The Idemix checks do their modular exponentiations with GMP (gmpy2), not Python's pow."""

from __future__ import annotations

import gmpy2

from signing_gateway.verification.idemix import credential_attribute_values, verify_static_qr
from signing_gateway.verification.idemix_issuance import verify_issue_signature
from tests.support.idemix_issuer import TEST_KEY, make_holder, sign
from tests.unit.verification.idemix_testdata import DENIED, DENIED_QR


def test_both_checks_exponentiate_with_gmp(monkeypatch):
    """A real QR and an issued credential each verify through gmpy2.powmod modulo the key's n."""
    moduli: list[int] = []
    gmp_powmod = gmpy2.powmod

    def recording_powmod(base: int, exponent: int, modulus: int) -> object:
        moduli.append(int(modulus))
        return gmp_powmod(base, exponent, modulus)

    holder = make_holder()
    values = credential_attribute_values({**DENIED, "category": "1"}, issuer_pk_id="VWS-TEST-0")
    message = sign(holder, values)
    monkeypatch.setattr(gmpy2, "powmod", recording_powmod)
    verify_static_qr(DENIED_QR, {"VWS-TEST-0": TEST_KEY, "testPk": TEST_KEY})
    qr_moduli, moduli[:] = list(moduli), []
    verify_issue_signature(
        message, key=TEST_KEY, commitment=holder.commitment, nonce2=holder.nonce2, attributes=values
    )
    assert qr_moduli.count(TEST_KEY.n) >= len(values)
    assert moduli.count(TEST_KEY.n) >= len(values)
