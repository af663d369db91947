r"""The domestic signer: `/prepare_issue`, `/issue`, `/issue_static`, simulated with Ed25519.

The real domestic issuer runs Idemix (CL signatures, zero-knowledge proofs). This fake keeps the
wire shapes and replaces the cryptography with an Ed25519 signature a test can verify:

- issue: Ed25519 over `b"NL2-issue\x00" + cbor2.dumps([issuerNonce, attributes], canonical=True)`
- static: Ed25519 over `b"NL2-static\x00" + cbor2.dumps(attributes, canonical=True)`, packed as
  `"NL2:" + base45(cbor2.dumps([kid, attributes_cbor, signature]))`

The issuer nonce of `/prepare_issue` is single use and expires after five minutes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import cbor2
import orjson

from fake_signer.base45 import b45encode
from fake_signer.errors import WireInputError
from fake_signer.hcert import proof_identifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from fake_signer.behaviour import FaultSpec
    from fake_signer.keys import DomesticSigningKey

NONCE_TTL_SECONDS = 300.0
MAX_CREDENTIAL_AMOUNT = 100
#: The most attribute sets `/issue` signs on the event loop. Each costs about 40 µs (Ed25519 +
#: CBOR), so this holds the loop no longer than a few `/get_credential` do; a larger batch (up to
#: 100 sets, 4 ms) is signed in a worker thread, which costs about 50 µs more per request. On the
#: loop, 100 such batches whose latency ran out together held `/healthz` up for 0.4-0.7 s.
SETS_ON_LOOP = 4
ISSUE_CONTEXT = b"NL2-issue\x00"
STATIC_CONTEXT = b"NL2-static\x00"
STATIC_PREFIX = "NL2:"
#: The attributes every set holds, in the order an Idemix credential signs them.
ATTRIBUTE_NAMES = (
    "isSpecimen",
    "isPaperProof",
    "validFrom",
    "validForHours",
    "firstNameInitial",
    "lastNameInitial",
    "birthDay",
    "birthMonth",
)
REQUIRED_ATTRIBUTES = frozenset(ATTRIBUTE_NAMES)
OPTIONAL_ATTRIBUTES = frozenset({"category"})


@dataclass
class _Nonce:
    expires: float
    amount: int


class NonceStore:
    """Issuer nonces handed out by `/prepare_issue`: single use, with a time to live."""

    def __init__(self, clock: Callable[[], float], ttl: float = NONCE_TTL_SECONDS) -> None:
        """Use `clock` (monotonic seconds) for expiry."""
        self._clock = clock
        self._ttl = ttl
        # Insertion order is expiry order (constant TTL), so pruning pops from the front.
        self._nonces: OrderedDict[str, _Nonce] = OrderedDict()

    def __len__(self) -> int:
        """Nonces issued and neither used nor pruned."""
        return len(self._nonces)

    def issue(self, amount: int) -> str:
        """Create and remember a fresh nonce (base64 of 16 random bytes)."""
        nonce = base64.b64encode(secrets.token_bytes(16)).decode("ascii")
        self.remember(nonce, amount)
        return nonce

    def remember(self, nonce: str, amount: int) -> None:
        """Remember a nonce made elsewhere (the Idemix scheme's) for `amount` credentials."""
        self._prune()
        self._nonces[nonce] = _Nonce(self._clock() + self._ttl, amount)

    def check(self, nonce: str, *, wanted: int = 1) -> int:
        """Whether a nonce can be used for `wanted` credentials now, without using it up.

        Returns the amount it was issued for.

        Raises:
            WireInputError: the nonce is unknown, already used or expired, or `wanted` is
                more than its amount.
        """
        self._prune()
        entry = self._nonces.get(nonce)
        if entry is None:
            raise WireInputError("issuerNonce is unknown, already used or expired")
        if wanted > entry.amount:
            raise WireInputError(f"{wanted} attribute sets for {entry.amount} credentials")
        return entry.amount

    def consume(self, nonce: str, *, wanted: int = 1) -> int:
        """Use a nonce up for `wanted` credentials; return the amount it was issued for.

        A request for more credentials than the nonce was issued for is refused and leaves the
        nonce unused: nothing was signed.

        Raises:
            WireInputError: as `check`.
        """
        amount = self.check(nonce, wanted=wanted)
        del self._nonces[nonce]
        return amount

    def _prune(self) -> None:
        now = self._clock()
        while self._nonces:
            nonce, entry = next(iter(self._nonces.items()))
            if entry.expires > now:
                break
            del self._nonces[nonce]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _object(body: bytes, *, exact_numbers: bool = False) -> dict[str, Any]:
    """The JSON object in ``body``; ``exact_numbers`` keeps integers of any size exact.

    An Idemix commitment carries integers of thousands of bits, which the real signer reads
    whole; orjson would refuse them or round them to floats, so ``/issue`` uses the standard
    library (``NaN`` and ``Infinity`` still refused, as they are not JSON, and so is a number
    past a double's range such as ``1e400``, as orjson refuses it).
    """
    try:
        data = _exact_loads(body) if exact_numbers else orjson.loads(body)
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise WireInputError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireInputError("body must be a JSON object")
    return data


def _exact_loads(body: bytes) -> Any:  # noqa: ANN401 - any JSON value
    """Parse like orjson but with exact integers: UTF-8 only, and every string Unicode text."""

    def refuse(constant: str) -> NoReturn:
        raise ValueError(f"{constant} is not JSON")

    def finite(number: str) -> float:
        # float() reads 1e400 as inf, which orjson (and Go's float64) refuse as out of range.
        value = float(number)
        if not math.isfinite(value):
            raise ValueError("number is infinity when parsed as double")
        return value

    # json.loads would guess UTF-16/32 and let encoded surrogates through ("surrogatepass").
    text = body.decode("utf-8")
    # Python's int() refuses more than 4,300 digits; Decimal holds any integer exactly (and
    # /issue reads no number's value).
    data = json.loads(text, parse_constant=refuse, parse_float=finite, parse_int=Decimal)
    if "\\u" in text:
        # Only a \u escape can make a lone surrogate ("\ud800"): not Unicode text, refused by
        # orjson on the other endpoints, and no signature or answer can encode it. Look only then.
        _refuse_lone_surrogates(data)
    return data


def _refuse_lone_surrogates(data: object) -> None:
    pending = [data]
    while pending:  # a loop, not recursion: the nesting is as deep as the body made it
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone UTF-16 surrogate escape") from None
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _fields(data: dict[str, Any], *names: str) -> None:
    if unknown := set(data) - set(names):
        raise WireInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    if missing := set(names) - set(data):
        raise WireInputError(f"missing fields: {', '.join(sorted(missing))}")


def check_attributes(value: object, where: str) -> dict[str, str]:
    """Check one attribute set: the required names (+ optional category), string values only."""
    if not isinstance(value, dict):
        raise WireInputError(f"{where} must be a JSON object")
    if missing := REQUIRED_ATTRIBUTES - set(value):
        raise WireInputError(f"{where} misses {', '.join(sorted(missing))}")
    if unknown := set(value) - REQUIRED_ATTRIBUTES - OPTIONAL_ATTRIBUTES:
        raise WireInputError(f"{where} has unknown attributes {', '.join(sorted(unknown))}")
    if not all(isinstance(item, str) for item in value.values()):
        raise WireInputError(f"{where} values must all be strings")
    return value


def parse_prepare_issue(body: bytes) -> int:
    """Check a `/prepare_issue` body; return the credential amount."""
    data = _object(body)
    _fields(data, "credentialAmount")
    amount = data["credentialAmount"]
    if type(amount) is not int or not 1 <= amount <= MAX_CREDENTIAL_AMOUNT:
        raise WireInputError(f"credentialAmount must be an integer 1..{MAX_CREDENTIAL_AMOUNT}")
    return amount


def prepare_issue_response(key: DomesticSigningKey, nonces: NonceStore, amount: int) -> bytes:
    """Hand out a fresh nonce for an issuance of `amount` credentials."""
    return orjson.dumps(
        {
            "issuerPkId": _b64(key.kid),
            "issuerNonce": nonces.issue(amount),
            "credentialAmount": amount,
        }
    )


@dataclass(frozen=True)
class IssueRequest:
    """A checked `/issue` body (its nonce is used up when signing, so faults leave it usable)."""

    nonce: str
    attributes: list[dict[str, str]]
    #: The app's IssueCommitmentMessage, its numbers exact (read by the Idemix scheme only).
    commitment: dict[str, Any] = field(default_factory=dict)


def parse_issue(body: bytes) -> IssueRequest:
    """Check the shape of an `/issue` body."""
    data = _object(body, exact_numbers=True)
    _fields(data, "prepareIssueMessage", "issueCommitmentMessage", "credentialsAttributes")
    prepare, commitment = data["prepareIssueMessage"], data["issueCommitmentMessage"]
    if not isinstance(prepare, dict) or not isinstance(prepare.get("issuerNonce"), str):
        raise WireInputError("prepareIssueMessage must be an object with an issuerNonce")
    if not isinstance(commitment, dict):
        raise WireInputError("issueCommitmentMessage must be an object")
    attributes = data["credentialsAttributes"]
    if not isinstance(attributes, list) or not attributes:
        raise WireInputError("credentialsAttributes must be a non-empty list")
    checked = [check_attributes(a, f"credentialsAttributes[{i}]") for i, a in enumerate(attributes)]
    return IssueRequest(prepare["issuerNonce"], checked, commitment)


def check_commitment(request: IssueRequest) -> None:
    """The simulation's commitment names the session's nonce (`WireInputError` if not).

    The Idemix scheme has no such member: gabi's IssueCommitmentMessage holds no nonce, and the
    Idemix server takes it from the prepareIssueMessage handed back with the `/issue`.
    """
    if request.commitment.get("issuerNonce") != request.nonce:
        raise WireInputError("issueCommitmentMessage refers to another issuerNonce")


async def issue_response(
    request: IssueRequest, key: DomesticSigningKey, nonces: NonceStore, fault: FaultSpec | None
) -> bytes:
    """Use the nonce up and sign every attribute set, a large batch in a worker thread.

    The nonce is used up on the event loop before anything is signed, so a concurrent request
    with the same nonce is refused rather than signed twice.
    """
    nonces.consume(request.nonce, wanted=len(request.attributes))
    if len(request.attributes) <= SETS_ON_LOOP:
        return _sign_issue(request, key, fault)
    return await asyncio.to_thread(_sign_issue, request, key, fault)


def _sign_issue(request: IssueRequest, key: DomesticSigningKey, fault: FaultSpec | None) -> bytes:
    """The `/issue` answer: one signature message per attribute set (thread-safe, no state)."""
    kid = _b64(_fault_kid(key, fault))
    messages = []
    for attributes in request.attributes:
        signed = ISSUE_CONTEXT + cbor2.dumps([request.nonce, attributes], canonical=True)
        signature = _corrupt(key.private_key.sign(signed), fault)
        messages.append(
            {
                "issueSignatureMessage": {
                    "kid": kid,
                    "issuerNonce": request.nonce,
                    "signature": _b64(signature),
                },
                "attributes": attributes,
            }
        )
    return orjson.dumps(messages)


def parse_issue_static(body: bytes) -> dict[str, str]:
    """Check an `/issue_static` body; return the attributes."""
    data = _object(body)
    _fields(data, "credentialAttributes")
    return check_attributes(data["credentialAttributes"], "credentialAttributes")


def issue_static_response(
    attributes: dict[str, str], key: DomesticSigningKey, fault: FaultSpec | None
) -> bytes:
    """Sign one attribute set into an "NL2:" QR payload."""
    attributes_cbor = cbor2.dumps(attributes, canonical=True)
    signature = _corrupt(key.private_key.sign(STATIC_CONTEXT + attributes_cbor), fault)
    packed = cbor2.dumps([_fault_kid(key, fault), attributes_cbor, signature])
    qr = STATIC_PREFIX + b45encode(packed).decode("ascii")
    return orjson.dumps({"qr": qr, "proofIdentifier": proof_identifier(signature)})


def _fault_kid(key: DomesticSigningKey, fault: FaultSpec | None) -> bytes:
    if fault is not None and fault.kind == "wrong-kid":
        # There is only one domestic key, so "another kid" is one nobody publishes.
        return bytes(b ^ 0xFF for b in key.kid)
    return key.kid


def _corrupt(signature: bytes, fault: FaultSpec | None) -> bytes:
    if fault is not None and fault.kind == "bad-signature":
        return bytes([signature[0] ^ 0x01]) + signature[1:]
    return signature
