"""The app's proofs of its commitments U, verified as gabi's ProofList.Verify does, with caps."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import gmpy2
import orjson
import pytest

from signing_gateway.verification.errors import CommitmentProofError
from signing_gateway.verification.idemix_commitment import (
    CommitmentProof,
    check_proof_list,
    read_commitment_proofs,
    verify_commitment_proofs,
)
from tests.support.idemix_issuer import (
    TEST_KEY,
    b64,
    commitment_message,
    commitment_proofs,
    make_holders,
)
from tests.support.idemix_tampering import PAST_THE_BOUND, TAMPERS
from tests.unit.verification.idemix_testdata import TEST_KEY_P

NONCE1 = 0x0123456789ABCDEF0123456789ABCDEF
OTHER_NONCE = NONCE1 + 1
LIST = ("combinedProofs",)


def verify(document: dict[str, Any], *, count: int = 2, nonce1: int = NONCE1) -> None:
    """Verify `document` (the app's commitment JSON) for a session of `count` credentials."""
    # The standard library writes big JSON integers, as gabi reads them; orjson cannot.
    verify_commitment_proofs(json.dumps(document).encode(), TEST_KEY, nonce1=nonce1, count=count)


def refusal(document: dict[str, Any], **kwargs: int) -> CommitmentProofError:
    """The error `verify` raises for `document`."""
    with pytest.raises(CommitmentProofError) as caught:
        verify(document, **kwargs)
    return caught.value


def proofs(count: int = 2) -> list[CommitmentProof]:
    """Valid proofs of `count` commitments to one secret, for NONCE1."""
    return [
        CommitmentProof(p["U"], p["c"], p["v_prime_response"], p["s_response"])
        for p in commitment_proofs(make_holders(count), NONCE1)
    ]


@pytest.mark.parametrize("count", [1, 2, 5])
def test_an_apps_proofs_verify(count):
    """Proofs made as gabi's app makes them verify for their nonce, whatever their number."""
    verify(commitment_message(make_holders(count), NONCE1), count=count)


def test_numbers_as_json_integers_verify_too():
    """Bare JSON numbers, which gabi reads as well as base64, verify too."""
    holders = make_holders(1)
    document = {"combinedProofs": commitment_proofs(holders, NONCE1), "n_2": holders[0].nonce2}
    verify(document, count=1)


@pytest.mark.parametrize("tamper", TAMPERS)
def test_every_tampered_commitment_is_refused(tamper):
    """Each way the fake's and the server's check fails, the gateway's fails too."""
    error = refusal(tamper(make_holders(2), NONCE1, OTHER_NONCE))
    assert error.loc[:1] == LIST


def test_the_nonce_is_the_sessions():
    """Valid proofs for one nonce fail for any other."""
    document = commitment_message(make_holders(2), NONCE1)
    assert refusal(document, nonce1=OTHER_NONCE).loc == LIST


@pytest.mark.parametrize(
    ("change", "loc", "msg"),
    [
        (lambda c: c.pop("combinedProofs"), LIST, "must be a list of proofs"),
        (lambda c: c["combinedProofs"].clear(), LIST, "must hold a proof"),
        (
            lambda c: c["combinedProofs"].pop(),
            LIST,
            "must hold one proof per credential asked for (2), not 1",
        ),
        (lambda c: c["combinedProofs"].__setitem__(1, "U"), (*LIST, 1), "must be an object"),
        (
            lambda c: c["combinedProofs"][1].pop("c"),
            (*LIST, 1, "c"),
            "must be a big integer (base64 of its bytes)",
        ),
        (
            lambda c: c["combinedProofs"][0].update(U="not base64!"),
            (*LIST, 0, "U"),
            "must be a big integer (base64 of its bytes)",
        ),
        (
            lambda c: c["combinedProofs"][0].update(s_response=-1),
            (*LIST, 0, "s_response"),
            "must be a big integer (base64 of its bytes)",
        ),
        (
            lambda c: c["combinedProofs"][1].update(c=b64(7)),
            (*LIST, 1, "c"),
            "differs from the first proof's",
        ),
    ],
    ids=[
        "no-proofs",
        "empty",
        "one-short",
        "not-an-object",
        "no-c",
        "u-not-base64",
        "negative",
        "two-challenges",
    ],
)
def test_malformed_proofs_are_refused_where_they_fail(change, loc, msg):
    """A proof list that cannot be checked names the proof and the field at fault."""
    document = commitment_message(make_holders(2), NONCE1)
    change(document)
    error = refusal(document)
    assert (error.loc, error.msg) == (loc, msg)


def with_every(proofs: list[CommitmentProof], **numbers: int) -> list[CommitmentProof]:
    """`proofs` with `numbers` in every one (so that they still agree with each other)."""
    return [replace(proof, **numbers) for proof in proofs]


@pytest.mark.parametrize(
    ("numbers", "field", "msg"),
    [
        ({"c": 1 << 256}, "c", "is longer than a challenge"),
        ({"s_response": 1 << 641}, "s_response", "is out of range"),
        ({"v_prime_response": 1 << 2561}, "v_prime_response", "is out of range"),
        ({"v_prime_response": 1 << 100_000}, "v_prime_response", "is out of range"),
    ],
    ids=[
        "c-257-bits",
        "s-response-642-bits",
        "v-prime-response-2562-bits",
        "v-prime-response-huge",
    ],
)
def test_every_exponent_is_capped(numbers, field, msg):
    """Past its cap an exponent is refused; gabi's own bound on v_prime_response is 2^2561 - 1."""
    with pytest.raises(CommitmentProofError) as caught:
        check_proof_list(with_every(proofs(), **numbers), TEST_KEY, count=2)
    assert (caught.value.loc, caught.value.msg) == ((*LIST, 0, field), msg)


def test_the_largest_exponents_a_real_app_sends_pass_the_caps():
    """The caps refuse nothing an app can send: each at its largest passes the size checks."""
    largest = {
        "c": (1 << 256) - 1,
        "s_response": (1 << 641) - 1,
        "v_prime_response": (1 << 2561) - 1,
    }
    check_proof_list(with_every(proofs(), **largest), TEST_KEY, count=2)


@pytest.mark.parametrize(
    "u",
    [0, 1, TEST_KEY.n, TEST_KEY.n + 5, TEST_KEY_P, 3 * TEST_KEY_P],
    ids=["0", "1", "n", "past-n", "p", "3p"],
)
def test_u_must_be_an_invertible_residue(u):
    """U outside (1, n), or sharing a factor with n (no inverse for U^-c), is refused."""
    changed = proofs()
    changed[1] = replace(changed[1], u=u)
    with pytest.raises(CommitmentProofError) as caught:
        check_proof_list(changed, TEST_KEY, count=2)
    assert caught.value.loc == (*LIST, 1, "U")


def test_a_crafted_proof_is_refused_before_any_exponentiation(monkeypatch):
    """Past its bound, v_prime_response costs no exponentiation: refused on sizes alone."""
    calls: list[int] = []
    gmp_powmod = gmpy2.powmod

    def counting_powmod(base: int, exponent: int, modulus: int) -> object:
        calls.append(int(exponent).bit_length())
        return gmp_powmod(base, exponent, modulus)

    document = commitment_message(make_holders(2), NONCE1)
    valid = commitment_message(make_holders(2), NONCE1)
    for proof in document["combinedProofs"]:
        value = int.from_bytes(base64.b64decode(proof["v_prime_response"]), "big")
        proof["v_prime_response"] = b64(value + (PAST_THE_BOUND << 40_000))
    monkeypatch.setattr(gmpy2, "powmod", counting_powmod)
    assert refusal(document).msg == "is out of range"
    assert calls == []
    verify(valid)
    assert len(calls) == 6  # three exponentiations per proof, none past 2561 bits
    assert max(calls) <= 2561


def test_reading_keeps_the_order_sent():
    """The proofs come back in the order the app sent them (each one's U meets its credential)."""
    document = commitment_message(make_holders(3), NONCE1)
    read = read_commitment_proofs(orjson.dumps(document))
    assert [b64(p.u) for p in read] == [p["U"] for p in document["combinedProofs"]]
