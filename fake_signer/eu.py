"""The EU signer's `POST /get_credential`: request checks and the credential it answers."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from fake_signer import hcert
from fake_signer.errors import KeyExpiredError, WireInputError
from fake_signer.keys import KeyUsage

if TYPE_CHECKING:
    from fake_signer.behaviour import FaultSpec
    from fake_signer.keys import EuSigningKey, KeyMaterial

_FIELDS = frozenset({"keyUsage", "expirationTime", "dcc"})
_USAGES = {usage.value: usage for usage in KeyUsage}
# An RFC 3339 date-time (section 5.6) as the real signer reads it (Go's `time.RFC3339`): "T" and
# "Z" upper case (the RFC's NOTE would also allow lower case, Go does not), any fraction of a
# second, an offset "Z" or ±hh:mm. `fromisoformat` alone also takes ISO 8601 forms RFC 3339
# lacks (basic format, week dates, no seconds, "+0000"); it still checks the ranges after this.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:[0-5][0-9])"
)


#: The status the real issuance server answers every refusal with: it has no other error status,
#: a body it cannot read and a key usage it has no key for are both its `500`.
REFUSED_STATUS = 500


def _refused(message: str) -> WireInputError:
    return WireInputError(message, status=REFUSED_STATUS)


@dataclass(frozen=True)
class CredentialRequest:
    """A checked `/get_credential` body."""

    usage: KeyUsage
    expires_at: int
    dcc: dict[str, Any]


def parse_request(body: bytes, *, now: float, keys: KeyMaterial) -> CredentialRequest:
    """Check a `/get_credential` body against the wire contract.

    Raises:
        WireInputError: with `REFUSED_STATUS`: bad JSON, a missing field, unknown key usage,
            unparsable or past expiration time, expiration after the DSC's validity or the
            CSCA's (whichever ends first), `dcc` not an object or a member of it unreadable.
        KeyExpiredError: the DSC of the key usage, or the CSCA, has ended.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _refused(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _refused("body must be a JSON object")
    # Other members are ignored, as the real server's JSON decoder ignores them.
    if missing := _FIELDS - set(data):
        raise _refused(f"missing fields: {', '.join(sorted(missing))}")
    usage = _parse_usage(data["keyUsage"])
    dcc = data["dcc"]
    if not isinstance(dcc, dict):
        raise _refused("dcc must be a JSON object")
    expires_at = _parse_expiration(data["expirationTime"])
    if expires_at <= now:
        raise _refused("expirationTime is not in the future")
    check_signing_key(keys, usage, now)
    # A verifier that checks the whole chain accepts the DSC only while its CSCA is valid too.
    name, end = keys.signing_end(usage)
    if expires_at > end.timestamp():
        raise _refused(
            "expirationTime is after the signing certificate's validity: "
            f"{name} ends at {end:%Y-%m-%dT%H:%M:%SZ}"
        )
    return CredentialRequest(usage, expires_at, as_issuer_reads(dcc))


# The DCC as the real issuance server holds it: it reads the JSON into fixed records (each
# member's empty value, or None for a record, given in order) and signs their encoding, not the
# bytes it was sent. Members it has no place for are dropped, a member left out (or null) is
# signed empty, and the members in `_OMITTED_EMPTY` (and the groups) only when not empty.
_TOP: dict[str, Any] = {"ver": "", "dob": "", "nam": None}
_RECORDS: dict[str, dict[str, Any]] = {
    "nam": {"fn": "", "fnt": "", "gn": "", "gnt": ""},
    "v": {
        "tg": "",
        "vp": "",
        "mp": "",
        "ma": "",
        "dn": 0,
        "sd": 0,
        "dt": "",
        "co": "",
        "is": "",
        "ci": "",
    },
    "t": {
        "tg": "",
        "tt": "",
        "nm": "",
        "ma": "",
        "sc": "",
        "tr": "",
        "tc": "",
        "co": "",
        "is": "",
        "ci": "",
    },
    "r": {"tg": "", "fr": "", "co": "", "is": "", "df": "", "du": "", "ci": ""},
}
_OMITTED_EMPTY = {("t", "nm"), ("t", "ma")}
_INT64 = range(-(2**63), 2**63)


def as_issuer_reads(dcc: dict[str, Any]) -> dict[str, Any]:
    """`dcc` as the real issuance server reads it into its records, and so signs it.

    Raises:
        WireInputError: a member of the wrong JSON type, which that server cannot read either.
    """
    form = {name: _read_value(f"dcc.{name}", empty, dcc.get(name)) for name, empty in _TOP.items()}
    if form["nam"] is not None:
        form["nam"] = _read_record("nam", "dcc.nam", form["nam"])
    for group in ("v", "t", "r"):
        entries = dcc.get(group)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise _refused(f"dcc.{group} must be an array")
        if entries:  # an empty group is not written
            form[group] = [
                None if entry is None else _read_record(group, f"dcc.{group}[{index}]", entry)
                for index, entry in enumerate(entries)
            ]
    return form


def _read_record(place: str, where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refused(f"{where} must be an object")
    record = {}
    for name, empty in _RECORDS[place].items():
        member = _read_value(f"{where}.{name}", empty, value.get(name))
        if member != "" or (place, name) not in _OMITTED_EMPTY:
            record[name] = member
    return record


def _read_value(where: str, empty: object, value: object) -> object:
    """`value` read into a member whose empty value is `empty` (null leaves it empty)."""
    if value is None:
        return empty
    if isinstance(empty, str) and not isinstance(value, str):
        raise _refused(f"{where} must be a string")
    if isinstance(empty, int) and (type(value) is not int or value not in _INT64):
        raise _refused(f"{where} must be a whole number")
    if empty is None and not isinstance(value, dict):
        raise _refused(f"{where} must be an object")
    return value


def check_signing_key(keys: KeyMaterial, usage: KeyUsage, now: float) -> None:
    """Refuse to sign for `usage` once its DSC or the CSCA has ended (checked at start only).

    Raises:
        KeyExpiredError: the certificate that ends first ended before `now`.
    """
    name, end = keys.signing_end(usage)
    if now > end.timestamp():  # notAfter is the last instant of validity (RFC 5280 4.1.2.5)
        raise KeyExpiredError(
            f"cannot sign for {usage.value}: {name} ended at {end:%Y-%m-%dT%H:%M:%SZ}; "
            "start the fake again with fresh keys"
        )


def _parse_usage(value: object) -> KeyUsage:
    if not isinstance(value, str):
        # Named by its JSON type, not quoted: the repr of an array nested as deep as the JSON
        # parser allows (about 1,000 levels) is past Python's recursion limit, a 500.
        raise _refused(
            f"keyUsage must be a string, one of {', '.join(_USAGES)}, not {_json_type(value)}"
        )
    usage = _USAGES.get(value)
    if usage is None:
        raise _refused(f"unknown keyUsage {value!r}")
    return usage


def _json_type(value: object) -> str:
    """The JSON type of a parsed value, as an error message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


def _parse_expiration(value: object) -> int:
    if not isinstance(value, str):
        raise _refused("expirationTime must be an RFC 3339 string")
    if _RFC3339.fullmatch(value) is None:
        raise _refused(
            f"expirationTime {value!r} is not an RFC 3339 date-time with offset "
            "like 2021-06-11T17:30:00Z or 2021-06-11T17:30:00+02:00"
        )
    try:
        # Out-of-range parts (month 13, hour 24, second 60, offset +24:00) are refused here.
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _refused(f"expirationTime {value!r} is not a valid date-time") from None
    return math.floor(when.timestamp())


def credential_response(
    request: CredentialRequest,
    *,
    keys: KeyMaterial,
    issuer: str,
    issued_at: int,
    fault: FaultSpec | None,
) -> bytes:
    """Sign a credential and render the 200 body, honouring signature-level faults."""
    # Again when signing: the certificate may have ended during the latency wait.
    check_signing_key(keys, request.usage, issued_at)
    key = keys.eu[request.usage]
    header_kid = _other_kid(keys, key) if fault is not None and fault.kind == "wrong-kid" else None
    credential = hcert.issue_credential(
        key=key.private_key,
        kid=key.kid,
        issuer=issuer,
        issued_at=issued_at,
        expires_at=request.expires_at,
        dcc=request.dcc,
        header_kid=header_kid,
        corrupt_signature=fault is not None and fault.kind == "bad-signature",
    )
    return orjson.dumps(
        {"credential": credential.credential, "proofIdentifier": credential.proof_identifier}
    )


def _other_kid(keys: KeyMaterial, key: EuSigningKey) -> bytes:
    """The kid of another published DSC: known to a verifier, but not the signing key's."""
    usages = list(keys.eu)
    return keys.eu[usages[(usages.index(key.usage) + 1) % len(usages)]].kid
