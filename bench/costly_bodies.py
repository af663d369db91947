"""The costliest request bodies the gateway takes, route by route, for `bench.body_cost`.

Each is within every limit at the settings' defaults (`security/settings.py` LimitsSettings,
the domestic credential amount) and is answered 200 once signed, or 401 for a session only
after all of its validation. Beside each route's ordinary body, the ones that cost most:

- the largest JSON each check still reads whole: 192 KiB of one small value repeated (a body
  `prepare-issue` ignores once checked), a 64 KiB commitment of them;
- every field at its longest, free text of unassigned code points (each looked up one at a
  time), a UVCI of 80 characters with its check character, a 96 Ki-digit fraction of
  `expirationTime` (the one field whose length only the string limit bounds);
- the most parts a request may hold: 28 domestic credentials (a session's default amount),
  10 EU requests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

#: The limits' defaults, for which the bodies are built.
MAX_BODY_BYTES = 192 * 1024
MAX_STRING_CHARS = 96 * 1024
#: `issuance.commitment.MAX_COMMITMENT_BYTES`: what a commitment may decode to.
MAX_COMMITMENT_BYTES = 64 * 1024
#: The domestic credentials a session takes by default (more are refused after validation).
CREDENTIAL_AMOUNT = 28
MAX_EU = 10
#: The session nonce the mocked domestic signer hands out (`tests.api.signer_mocks.NONCE`).
NONCE = base64.b64encode(b"0123456789abcdef").decode()

#: The values a large body or commitment is made of; each cost the checks a step of its own.
ITEMS = {
    "empty objects": b"{}",
    "empty arrays": b"[]",
    "zeros": b"0",
    "fractions": b"0.0",
    "one-member objects": b'{"a":0}',
    "mixed values": b'0,"",{},[]',
}

#: Free text of 80 characters at its slowest to check: unassigned code points.
UNASSIGNED_TEXT = "\u0378" * 80


@dataclass(frozen=True)
class Case:
    """A body for a route: `build(stoken)` makes it (`stoken` is None unless `session`)."""

    name: str
    path: str
    build: Callable[[str | None], bytes]
    session: bool = False


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _this_hour() -> str:
    return str(int(datetime.now(UTC).timestamp()) // 3600 * 3600)


def attributes(*, longest: bool = False) -> dict[str, str]:
    """Valid domestic attributes; `longest`: every field at its longest form."""
    attrs = {
        "isSpecimen": "0",
        "isPaperProof": "1",
        "validFrom": _this_hour(),
        "validForHours": "2160" if longest else "24",
        "firstNameInitial": "A",
        "lastNameInitial": "J",
        "birthDay": "29" if longest else "2",
        "birthMonth": "12" if longest else "4",
    }
    return attrs | ({"category": "ABCD1234"} if longest else {})


def _uvci(serial: int) -> str:
    """An 80-character UVCI with its Luhn mod 38 check character (`domain.uvci`)."""
    # Imported here, not at the top: `bench.body_cost --against` imports this module before
    # it puts the checkout it measures first on the path, and that checkout's gateway must be
    # the one imported.
    from signing_gateway.domain.uvci import luhn_mod_n_check_character  # noqa: PLC0415

    identifier = f"URN:UVCI:01:NL:{serial:04d}:"
    identifier += "A" * (78 - len(identifier))
    return f"{identifier}#{luhn_mod_n_check_character(identifier)}"


def eu_test(serial: int = 0, *, longest: bool = False, fraction: int = 0) -> dict[str, Any]:
    """A valid NAA test request; `longest`: every string at its longest, unassigned text."""
    text = UNASSIGNED_TEXT if longest else "Ministry of Health Welfare and Sport"
    entry = {
        "tg": "840539006",
        "tt": "LP6464-4",
        "nm": text if longest else "Roche LightCycler qPCR",
        "sc": "2021-07-01T10:00:00.123456789+02:00" if longest else "2021-07-01T10:00:00Z",
        "tr": "260415000",
        "tc": text if longest else "Testlocatie Utrecht",
        "co": "NL",
        "is": text,
        "ci": _uvci(serial) if longest else f"URN:UVCI:01:NL:0A1B2C3D4E5F{serial}",
    }
    names = (
        {"fn": text, "fnt": "A" * 80, "gn": text, "gnt": "B" * 80}
        if longest
        else {"fn": "de Vries", "fnt": "DE<VRIES", "gn": "Piet", "gnt": "PIET"}
    )
    request: dict[str, Any] = {
        "keyUsage": "test",
        "dcc": {"ver": "1.3.999" if longest else "1.3.0", "nam": names, "dob": "1975-11"},
    }
    request["dcc"]["t"] = [entry]
    if fraction:
        expires = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
        request["expirationTime"] = f"{expires}.{'0' * fraction}Z"
    return request


def _array(item: str, limit: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    """`head`, a JSON array of as many `item`s (`ITEMS`) as `limit` bytes hold, `tail`."""
    filler = ITEMS[item]
    count = (limit - len(head) - len(tail) - 1) // (len(filler) + 1)
    return head + b"[" + b",".join([filler] * count) + b"]" + tail


def commitment(item: str | None = None) -> str:
    """A base64 commitment naming the session's nonce: small, or 64 KiB of `item`s."""
    if item is None:
        return base64.b64encode(_json({"n_2": NONCE, "issuerNonce": NONCE})).decode()
    head = f'{{"issuerNonce":"{NONCE}","x":'.encode()
    return base64.b64encode(_array(item, MAX_COMMITMENT_BYTES, head, b"}")).decode()


def _filled(item: str, _stoken: str | None) -> bytes:
    return _array(item, MAX_BODY_BYTES)


def _issue(item: str | None, stoken: str | None) -> bytes:
    count = 1 if item is None else CREDENTIAL_AMOUNT
    return _json(
        {
            "stoken": stoken,
            "issueCommitmentMessage": commitment(item),
            "credentialsAttributes": [attributes(longest=item is not None)] * count,
        }
    )


def _credentials(size: str, stoken: str | None) -> bytes:
    largest = size == "largest"
    return _json(
        {
            "stoken": stoken,
            "issueCommitmentMessage": commitment("empty objects" if largest else None),
            "domestic": [attributes(longest=largest)] * (CREDENTIAL_AMOUNT if largest else 1),
            "european": [eu_test(i, longest=largest) for i in range(MAX_EU if largest else 1)],
        }
    )


def _constant(body: bytes, _stoken: str | None) -> bytes:
    return body


def cases() -> list[Case]:
    """Every body measured, the ordinary one of each route first."""
    static = "/v1/domestic/static"
    prepare = "/v1/domestic/prepare-issue"
    return [
        Case("dcc: ordinary", "/v1/dcc", partial(_constant, _json(eu_test()))),
        Case(
            "dcc: longest fields, unassigned text",
            "/v1/dcc",
            partial(_constant, _json(eu_test(longest=True))),
        ),
        Case(
            "dcc: longest fields, 96 Ki-digit expirationTime fraction",
            "/v1/dcc",
            partial(_constant, _json(eu_test(longest=True, fraction=MAX_STRING_CHARS - 40))),
        ),
        Case(
            "static: ordinary",
            static,
            partial(_constant, _json({"credentialAttributes": attributes()})),
        ),
        Case(
            "static: longest fields, 190 KiB of spaces",
            static,
            partial(
                _constant,
                _json({"credentialAttributes": attributes(longest=True)}).ljust(
                    MAX_BODY_BYTES - 1024
                ),
            ),
        ),
        Case("prepare-issue: {}", prepare, partial(_constant, b"{}")),
        *(
            Case(f"prepare-issue: 192 KiB of {item}", prepare, partial(_filled, item))
            for item in ITEMS
        ),
        Case("issue: 1 credential", "/v1/domestic/issue", partial(_issue, None), session=True),
        *(
            Case(
                f"issue: 28 credentials, 64 KiB commitment of {item}",
                "/v1/domestic/issue",
                partial(_issue, item),
                session=True,
            )
            for item in ITEMS
        ),
        Case(
            "print: ordinary (both parts)",
            "/v1/print",
            partial(_constant, _json({"domestic": attributes(), "european": eu_test()})),
        ),
        Case(
            "print: both, longest fields",
            "/v1/print",
            partial(
                _constant,
                _json({"domestic": attributes(longest=True), "european": eu_test(longest=True)}),
            ),
        ),
        Case(
            "credentials: 1 + 1",
            "/v1/credentials",
            partial(_credentials, "ordinary"),
            session=True,
        ),
        Case(
            "credentials: 28 + 10, longest fields, 64 KiB commitment",
            "/v1/credentials",
            partial(_credentials, "largest"),
            session=True,
        ),
    ]
