"""CPU per Idemix check and per fake Idemix signature, with Python's ``pow`` and with GMP's.

``python -m bench.idemix_cpu`` (from the source tree, dev dependencies installed): the real
static QRs of the tests, a credential signed here with the test key and an app's proofs of its
commitments U for a session of four credentials, each checked 10 times
with ``pow`` put back in place of GMP's ``powmod`` and 10 times as shipped, side by side in one
run; the median ``time.process_time`` of each, in ms. The fake's ``/issue`` credential
(``sign_commitment``) and ``/issue_static`` (``issue_static``) likewise.
"""

from __future__ import annotations

import json
import statistics
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING
from unittest import mock

from fake_signer import idemix as fake_idemix
from signing_gateway.verification import idemix, idemix_commitment, idemix_issuance
from signing_gateway.verification.idemix import credential_attribute_values, verify_static_qr
from signing_gateway.verification.idemix_issuance import verify_issue_signature
from tests.support.idemix_issuer import (
    TEST_KEY,
    commitment_message,
    make_holder,
    make_holders,
    sign,
)
from tests.unit.verification.idemix_testdata import CATEGORY_3G_QR, DENIED_QR, PAPER

if TYPE_CHECKING:
    from collections.abc import Callable

ROUNDS = 10
#: Credentials in the session whose proofs of U are checked.
PROOFS = 4
ATTRIBUTES = {**PAPER, "isPaperProof": "0", "category": "1"}


def _python_pow(base: int, exponent: int, modulus: int) -> int:
    return pow(base, exponent, modulus)


def _median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def _cases() -> dict[str, Callable[[], object]]:
    keys = {"VWS-TEST-0": TEST_KEY, "testPk": TEST_KEY}
    holder = make_holder()
    values = credential_attribute_values(ATTRIBUTES, issuer_pk_id="VWS-TEST-0")
    message = sign(holder, values)
    fake_key = fake_idemix.test_issuer_key()
    ints = [fake_idemix.attribute_int(value) for value in values]

    def check_issued() -> None:
        verify_issue_signature(
            message, key=TEST_KEY, commitment=holder.commitment, nonce2=holder.nonce2,
            attributes=values,
        )  # fmt: skip

    nonce1 = 1 << 127
    # A session's proofs of U: one per credential, verified together; the cost is per proof.
    proofs_of_u = json.dumps(commitment_message(make_holders(PROOFS), nonce1)).encode()

    def check_proofs_of_u() -> None:
        idemix_commitment.verify_commitment_proofs(
            proofs_of_u, TEST_KEY, nonce1=nonce1, count=PROOFS
        )

    return {
        "gateway: static QR (DENIED_QR)": lambda: verify_static_qr(DENIED_QR, keys),
        "gateway: static QR (CATEGORY_3G_QR)": lambda: verify_static_qr(CATEGORY_3G_QR, keys),
        "gateway: issued credential": check_issued,
        f"gateway: proofs of U ({PROOFS} credentials)": check_proofs_of_u,
        "fake: /issue credential": lambda: fake_idemix.sign_commitment(
            fake_key, holder.commitment, holder.nonce2, ints
        ),
        "fake: /issue_static": lambda: fake_idemix.issue_static(fake_key, PAPER),
    }


def main() -> None:
    """Print the table: case, ms with pow, ms with GMP, ratio."""
    print(f"{'median of ' + str(ROUNDS) + ', ms of CPU':40} {'pow':>8} {'gmpy2':>8} {'ratio':>6}")
    for name, work in _cases().items():
        with ExitStack() as stack:
            for module, attribute in (
                (idemix, "powmod"),
                (idemix_issuance, "powmod"),
                (idemix_commitment, "powmod"),
                (fake_idemix, "_powmod"),
            ):
                stack.enter_context(mock.patch.object(module, attribute, _python_pow))
            before = _median_ms(work)
        after = _median_ms(work)
        print(f"{name:40} {before:8.1f} {after:8.1f} {before / after:6.1f}")


if __name__ == "__main__":
    main()
