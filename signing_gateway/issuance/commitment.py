r"""The app's issue commitment: checked for shape, then sent to the signer byte for byte.

`issueCommitmentMessage` is base64 of the app's JSON commitment, its half of the Idemix
issuance. Only the domestic signer reads it: the gateway takes nothing from it (the session's
nonce comes from the signer's own prepare message, see `issuance.domestic`). Its numbers are
big integers (2048 bits and more). gabi writes them as base64 strings, but its reader also takes
bare JSON numbers, which a 64-bit JSON parser cannot keep: orjson turns them into floats, or
refuses them. So:

- the decoded JSON is checked with the standard library's parser, whose number hooks leave
  every number unread (nothing is converted, so nothing is lost or refused), under the same
  depth and string limits as a request body (`security.json_shape.check_json_shape`): the body
  check cannot see inside the base64. That parser also takes an escaped lone UTF-16 surrogate
  (`"\ud800"`), which orjson refuses and a Go signer would silently replace, signing something
  other than what the app sent: the walk refuses those too, when the text has a `\u` at all.
  An object that names a key twice is refused as a request body is (`security.limits`): which
  of the two a signer would read is its parser's choice;
- the decoded bytes themselves, exactly as sent, become the signer's `issueCommitmentMessage`
  (`signers.domestic`): nothing re-encodes them.

In the simulation scheme the gateway also checks, once it holds the session, what the
simulation signer would refuse (`simulation_commitment_problem`): a commitment that names
another `issuerNonce` than the session's, or holds a number past a double's range (`1e99999`:
the signer reads integers whole but fractions and exponents as doubles, as Go and orjson do).
The idemix scheme checks the proofs instead (`verification.idemix_commitment`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections import deque
from typing import TYPE_CHECKING, Final, NoReturn

from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.security.json_shape import (
    REPEATED_KEY,
    RepeatedKeyError,
    check_json_shape,
    repeats_a_key,
    too_deep,
    unique_keys,
)

if TYPE_CHECKING:
    from signing_gateway.domain.errors import Loc
    from signing_gateway.security.settings import LimitsSettings

__all__ = [
    "MAX_COMMITMENT_BYTES",
    "decode_commitment",
    "decode_commitment_noting",
    "simulation_commitment_problem",
]

MAX_COMMITMENT_BYTES = 64 * 1024
#: The base64 length of `MAX_COMMITMENT_BYTES`: longer text is refused before it is decoded.
_MAX_COMMITMENT_CHARS = 4 * math.ceil(MAX_COMMITMENT_BYTES / 3)
#: Commitments up to this many base64 characters are checked on the event loop (under 2 ms
#: for the worst shapes); parsing and walking grow with the input, so longer ones go to a
#: worker thread.
_INLINE_CHECK_CHARS = 16 * 1024

#: The decoded size up to which the simulation's checks run on the event loop: about as much
#: JSON as `_INLINE_CHECK_CHARS` of base64 holds.
_INLINE_CHECK_BYTES = _INLINE_CHECK_CHARS * 3 // 4

_NOT_JSON_OBJECT = "must be base64 of a JSON object"
_TOO_LARGE = "is too large"
_OTHER_NONCE = "must be the issuerNonce of the session's prepare-issue message"
_OUT_OF_RANGE = "holds a number past a double's range, which the signer cannot read"


#: A number hook of `json.loads` that leaves each number's text as sent, never converted (the
#: value is None): the `append` of a deque that keeps nothing, so no Python step per number.
_LEFT_UNREAD: Final = deque[str](maxlen=0).append


def _refuse_constant(name: str) -> NoReturn:
    """`json.loads` takes NaN and Infinity, which JSON (and the signer) do not."""
    raise ValueError(f"{name} is not JSON")


#: The commitment's JSON parsed as a value: its numbers left unread, NaN and Infinity refused.
#: Shared by the event loop and the worker threads, as `json`'s own default decoder is.
_UNREAD_NUMBERS: Final = json.JSONDecoder(
    parse_int=_LEFT_UNREAD, parse_float=_LEFT_UNREAD, parse_constant=_refuse_constant
)


def _shape_problem(document: bytes, limits: LimitsSettings) -> str | None:
    """Why `document` is not one JSON object within `limits`; None when it is.

    Parsed with no Python step per object or number, and looked through for a repeated key
    after (`security.json_shape.repeats_a_key`): a 64 KiB commitment of 21,000 objects took 12 ms
    with a Python hook for each object and number, and takes 2 ms so. A document the parser
    refuses is parsed again as `_problem_in_order` does, which says whether a key repeated
    before the parser failed.
    """
    try:
        text = document.decode("utf-8")
        parsed = _UNREAD_NUMBERS.decode(text)
        repeated = repeats_a_key(
            document,
            parsed,
            parse_int=_LEFT_UNREAD,
            parse_float=_LEFT_UNREAD,
            parse_constant=_refuse_constant,
        )
    except (RecursionError, ValueError):
        return _problem_in_order(document, limits)
    if repeated:
        return REPEATED_KEY
    return _object_shape_problem(parsed, text, limits)


def _problem_in_order(document: bytes, limits: LimitsSettings) -> str | None:
    """`_shape_problem` as the parser meets each problem: a key repeated, or what it refuses."""
    try:
        text = document.decode("utf-8")
        parsed = json.loads(
            text,
            parse_int=_LEFT_UNREAD,
            parse_float=_LEFT_UNREAD,
            parse_constant=_refuse_constant,
            object_pairs_hook=unique_keys,
        )
    except RepeatedKeyError:
        return REPEATED_KEY
    except RecursionError:
        # The parser recurses once per level: a document deep enough to reach the recursion
        # limit is far past any allowed depth (`max_json_depth` is at most 256).
        return too_deep(limits.max_json_depth)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, NaN or Infinity
        return _NOT_JSON_OBJECT
    return _object_shape_problem(parsed, text, limits)


def _object_shape_problem(parsed: object, text: str, limits: LimitsSettings) -> str | None:
    """Why `parsed` (from the commitment `text`) is not one JSON object within `limits`."""
    if not isinstance(parsed, dict):
        return _NOT_JSON_OBJECT
    return check_json_shape(
        parsed,
        max_depth=limits.max_json_depth,
        max_string_chars=limits.max_json_string_chars,
        # Only a \u escape can make a lone surrogate: look for one only then.
        unicode_text="\\u" in text,
    )


def _invalid(loc: Loc, problem: str) -> DomainValidationError:
    return DomainValidationError([FieldError(loc=loc, msg=problem)])


def _checked(value: str, limits: LimitsSettings, loc: Loc) -> bytes:
    """The decoded bytes of `value`, or a 422 at `loc` saying why they will not do."""
    try:
        document = base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise _invalid(loc, _NOT_JSON_OBJECT) from exc
    if len(document) > MAX_COMMITMENT_BYTES:  # text of the longest length can hold 2 bytes more
        raise _invalid(loc, _TOO_LARGE)
    problem = _shape_problem(document, limits)
    if problem is not None:
        raise _invalid(loc, problem)
    return document


async def decode_commitment(value: str, *, limits: LimitsSettings, loc: Loc) -> bytes:
    """The JSON of a base64 commitment, as sent, once checked to be one object within `limits`.

    Raises:
        DomainValidationError: (422 at `loc`) not base64 of a JSON object, over
            `MAX_COMMITMENT_BYTES`, nested too deep, with too long a string or one
            holding a lone surrogate escape, or with a key repeated within one object.
    """
    if len(value) > _MAX_COMMITMENT_CHARS:
        raise _invalid(loc, _TOO_LARGE)
    if len(value) <= _INLINE_CHECK_CHARS:
        return _checked(value, limits, loc)
    return await asyncio.to_thread(_checked, value, limits, loc)


async def decode_commitment_noting(
    value: str, *, limits: LimitsSettings, loc: Loc, errors: list[FieldError]
) -> bytes | None:
    """`decode_commitment`, its refusal added to `errors` (None then) instead of raised.

    For a request whose other parts are checked too, so that one 422 names every error.
    """
    try:
        return await decode_commitment(value, limits=limits, loc=loc)
    except DomainValidationError as exc:
        errors.extend(exc.errors)
        return None


def _simulation_problem(document: bytes, issuer_nonce: str) -> tuple[Loc, str] | None:
    fractions: list[str] = []  # the text of every number with a fraction or an exponent
    parsed = json.loads(
        document.decode("utf-8"), parse_int=_LEFT_UNREAD, parse_float=fractions.append
    )
    if not all(map(math.isfinite, map(float, fractions))):
        return (), _OUT_OF_RANGE
    if not isinstance(parsed, dict) or parsed.get("issuerNonce") != issuer_nonce:
        return ("issuerNonce",), _OTHER_NONCE
    return None


async def simulation_commitment_problem(
    document: bytes, *, issuer_nonce: str
) -> tuple[Loc, str] | None:
    """Why the simulation signer would refuse `document` for the session of `issuer_nonce`.

    `document` is a commitment `decode_commitment` accepted. Returns where (under the
    commitment) and what is wrong, or None: it names another `issuerNonce` than the session's,
    or holds a number past a double's range. Integers of any size are left unread.
    """
    if len(document) <= _INLINE_CHECK_BYTES:
        return _simulation_problem(document, issuer_nonce)
    return await asyncio.to_thread(_simulation_problem, document, issuer_nonce)
