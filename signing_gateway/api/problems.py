"""Render every failure as RFC 9457 problem+json; never a stack trace or a downstream URL."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from signing_gateway.api.bodies import BodyInvalid
from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.errors import (
    ABOUT_BLANK,
    PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    GatewayError,
    RequestInvalid,
    about_blank_title,
    problem_body,
)
from signing_gateway.observability.context import (
    CACHE_CONTROL,
    NO_STORE_VALUE,
    REQUEST_ID_HEADER,
    current_request_id,
)
from signing_gateway.observability.logging import note_answered

logger = logging.getLogger(__name__)


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or current_request_id()


def problem_response(
    request: Request,
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A problem+json response for `request`."""
    body = problem_body(
        type_=type_,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=_request_id(request),
        extensions=extensions,
    )
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def render_gateway_error(request: Request, exc: GatewayError) -> Response:
    """The problem+json for an expected failure."""
    return problem_response(
        request,
        status=exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        extensions=exc.extensions(),
        headers=exc.headers(),
    )


#: Fields that hold personal data: their messages must not repeat what was submitted.
_PERSONAL_FIELDS = frozenset(
    {"nam", "dob", "firstNameInitial", "lastNameInitial", "birthDay", "birthMonth"}
)
_WITHHELD = "(value withheld)"
_MIN_BARE_LENGTH = 3
#: What pydantic puts before the message of a validator's ValueError or AssertionError: its
#: words, not the rule's ("Value error, give at least one of domestic and european").
_PYDANTIC_PREFIXES = {"value_error": "Value error, ", "assertion_error": "Assertion failed, "}


def _message(err: Mapping[str, Any]) -> str:
    """The error's message in the rule's words, without the value of a personal-data field."""
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix(_PYDANTIC_PREFIXES.get(str(err.get("type")), "")) or msg
    if _PERSONAL_FIELDS.isdisjoint(str(part) for part in err.get("loc", ())):
        return msg
    ctx = err.get("ctx") or {}
    for value in (ctx.get("value"), err.get("input")):
        if not isinstance(value, str) or not value:
            continue
        if f"'{value}'" in msg:
            msg = msg.replace(f"'{value}'", _WITHHELD)
        elif len(value) >= _MIN_BARE_LENGTH:
            # Short values are only withheld when quoted: bare "1" would mangle the text.
            msg = msg.replace(value, _WITHHELD)
    return msg


def _pydantic_fields(exc: RequestValidationError) -> list[FieldError]:
    # The raw pydantic error carries `input`; it is dropped, and messages of personal-data
    # fields lose the value they quote, so names and birth dates are never echoed.
    return [FieldError(loc=tuple(err.get("loc", ())), msg=_message(err)) for err in exc.errors()]


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)  # noqa: S101 - registered for this type only
    return render_gateway_error(request, exc)


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    if not isinstance(exc, BodyInvalid):
        return render_gateway_error(request, RequestInvalid(_pydantic_fields(exc)))
    # It lists the first errors only, and from there on may not count them all.
    refused = RequestInvalid(_pydantic_fields(exc), total=exc.total, at_least=exc.at_least)
    return render_gateway_error(request, refused)


async def _on_domain_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainValidationError)  # noqa: S101 - registered for this type only
    fields = [FieldError(loc=("body", *e.loc), msg=e.msg) for e in exc.errors]
    return render_gateway_error(request, RequestInvalid(fields))


def allow_with_head(allow: str) -> str:
    """A 405's `Allow` value, sorted, with HEAD wherever GET is.

    The outermost middleware serves every HEAD as a GET (`observability.request_metrics`),
    which FastAPI's routes, declaring GET alone, do not know; Starlette's own routes list both
    in no fixed order.
    """
    methods = {method.strip() for method in allow.split(",")} - {""}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


#: How much of a request's path and method a 404's or 405's detail quotes, in characters: a
#: path may be as long as the request line (kilobytes), and a detail is read in logs.
PATH_QUOTED_MAX = 100
_METHOD_QUOTED_MAX = 20
#: What a quoted path keeps as it is (RFC 3986 `pchar` and "/"); the rest is percent-encoded.
_PATH_CHARACTERS = "/!$&'()*+,;=:@-._~"
_CUT = "..."


def quoted(text: str, limit: int) -> str:
    """`text` as a detail may quote it: printable ASCII, at most `limit` characters.

    Percent-encoded (UTF-8) but for the characters a URI path holds as they are, so that no
    control or invisible character reaches a log or a client; cut with "..." past `limit`.
    """
    encoded = quote(text[: limit + 1], safe=_PATH_CHARACTERS, errors="replace")
    if len(encoded) <= limit and len(text) <= limit:
        return encoded
    kept = encoded[: limit - len(_CUT)]
    if (escape := kept.find("%", len(kept) - 2)) != -1:
        kept = kept[:escape]  # not half an escape
    return kept + _CUT


def _routing_detail(request: Request, status: int, allow: str | None) -> str | None:
    """What a 404 or 405 of the routing says: which path, which methods it takes."""
    # The path as the server decoded it: `request.url.path` is re-parsed from it, which cuts
    # it at a decoded "?" or "#" and drops tabs and line breaks.
    path = quoted(request.scope.get("path", ""), PATH_QUOTED_MAX)
    if status == 404:  # noqa: PLR2004
        return f"no operation at {path}; see /openapi.json"
    if status == 405:  # noqa: PLR2004
        method = quoted(request.method, _METHOD_QUOTED_MAX)
        return f"{method} is not allowed on {path}; allowed: {allow}" if allow else None
    return None


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    title = about_blank_title(exc.status_code)
    headers = dict(exc.headers) if exc.headers else None
    if headers is not None and "Allow" in headers:
        headers["Allow"] = allow_with_head(headers["Allow"])
    detail = str(exc.detail) if exc.status_code < 500 else title  # noqa: PLR2004
    if detail == title:  # what the routing raises: the status's phrase, no more
        allow = None if headers is None else headers.get("Allow")
        detail = _routing_detail(request, exc.status_code, allow) or detail
    return problem_response(
        request,
        status=exc.status_code,
        type_=ABOUT_BLANK,
        title=title,
        detail=detail,
        headers=headers,
    )


async def _on_client_gone(request: Request, exc: Exception) -> Response:
    # The caller closed its connection before a route read its body: a bodiless request, which
    # the body limits pass on unread, or one its server refused mid-body. Nobody reads this
    # answer, and it is no error of the gateway's: any caller can cause it at will.
    del exc
    return problem_response(
        request,
        status=400,
        type_=PROBLEM_BASE + "bad-request",
        title="Bad request",
        detail="the client went away",
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Unhandled errors are answered outside the request-id middleware, whose context has
    # ended: the record and the answer name the request id, and set the caching rule, here.
    request_id = _request_id(request)
    logger.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    note_answered(exc)  # Starlette raises it again for the server, which need not log it too
    return problem_response(
        request,
        status=500,
        type_=PROBLEM_BASE + "internal",
        title="Internal error",
        detail="The gateway failed unexpectedly; the request id identifies it in the logs.",
        headers={REQUEST_ID_HEADER: request_id, CACHE_CONTROL: NO_STORE_VALUE},
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the problem+json renderers on `app`."""
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(DomainValidationError, _on_domain_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(ClientDisconnect, _on_client_gone)
    app.add_exception_handler(Exception, _on_unexpected)
