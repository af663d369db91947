"""The headers the middlewares read and set, added to the OpenAPI document.

`X-Request-Timeout` and `X-Request-ID` are read by pure ASGI middlewares
(`resilience.caller_timeout`, `observability.request_metrics`), not by FastAPI parameters: a
`Header()` parameter would have FastAPI solve it on every request, a measured cost on the
issuance routes (docs/benchmarks.md). FastAPI documents only its own parameters, so
`document_headers` adds them to the generated document: both request headers as optional
parameters of every /v1 operation, and the `X-Request-ID` and `Cache-Control: no-store` that
every answer carries to every documented response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signing_gateway.api.openapi_document import amend_openapi
from signing_gateway.issuance.deadline import REQUEST_TIMEOUT_HEADER
from signing_gateway.observability.context import (
    NO_STORE_VALUE,
    REQUEST_ID_HEADER,
    SAFE_REQUEST_ID_PATTERN,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["document_headers"]

#: The operations that take the caller's headers: the API, not the probes.
_API_PREFIX = "/v1/"


def _request_timeout(deadline_seconds: float) -> dict[str, Any]:
    """The `X-Request-Timeout` parameter, as `resilience.caller_timeout` reads it."""
    return {
        "name": REQUEST_TIMEOUT_HEADER,
        "in": "header",
        "required": False,
        "description": (
            "How long the caller will wait, in seconds: a decimal number above 0 (`2.5`), "
            "counted from the request's arrival, time queued for a CPU permit included. It "
            "shortens the gateway's own deadline for the signer work "
            f"({deadline_seconds:g} s here) and never lengthens it: a larger value counts as "
            f"{deadline_seconds:g}. When it runs out the signer calls are cancelled and the "
            "answer is 504 `deadline-exceeded`, at once and with nothing sent to a signer if "
            "it ran out before the signer work started. A value that is not a positive number, "
            "or the header given twice, is answered 400 problem+json, and nothing is called. "
            "Without the header the gateway's own deadline applies."
        ),
        "schema": {"type": "number", "exclusiveMinimum": 0},
        "example": 2.5,
    }


def _request_id() -> dict[str, Any]:
    """The `X-Request-ID` parameter, as `observability.request_metrics` reads it."""
    return {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": (
            "An id for this request, of the caller's choosing: 1 to 128 of `A-Z a-z 0-9 . _ : "
            "-`. It comes back in the `X-Request-ID` response header and the `requestId` of a "
            "problem+json answer, and goes into the gateway's logs, its audit records and the "
            "signer calls. Any other value, or the header given twice, is not refused: it is "
            "ignored, and the gateway mints an id (32 hex digits), as it does without the "
            "header."
        ),
        "schema": {"type": "string", "pattern": SAFE_REQUEST_ID_PATTERN},
        "example": "7f3c1d2e-checkout-42",
    }


def _response_request_id() -> dict[str, Any]:
    """The `X-Request-ID` header of every answer."""
    return {
        "description": (
            "This request's id: the caller's `X-Request-ID` when it was kept, else one the "
            "gateway minted (32 hex digits). A problem+json answer names it as `requestId`; "
            "the gateway's logs are searched by it."
        ),
        "required": True,
        "schema": {"type": "string", "pattern": SAFE_REQUEST_ID_PATTERN},
    }


#: The `Cache-Control` header's name as documented.
CACHE_CONTROL_HEADER = "Cache-Control"


def _response_cache_control() -> dict[str, Any]:
    """The `Cache-Control` header of every answer."""
    return {
        "description": (
            "Always `no-store`: an answer holds personal data or this instance's state of the "
            "moment, and no browser or intermediary may keep a copy."
        ),
        "required": True,
        "schema": {"type": "string", "const": NO_STORE_VALUE},
    }


def _add_parameter(operation: dict[str, Any], parameter: dict[str, Any]) -> None:
    """Append `parameter` to `operation`'s, unless one of that name and place is there."""
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    place = (parameter["name"].lower(), parameter["in"])
    if all((p.get("name", "").lower(), p.get("in")) != place for p in parameters):
        parameters.append(parameter)


def document_headers(app: FastAPI, *, deadline_seconds: float) -> None:
    """Make `app`'s OpenAPI document show the headers its middlewares read and set.

    `deadline_seconds`: the gateway's own deadline (`request_deadline_seconds`), the most an
    `X-Request-Timeout` can ask for. Adding is idempotent: FastAPI keeps the document it
    generated, and each call of `app.openapi()` looks at that same one.
    """

    def add_headers(document: dict[str, Any]) -> None:
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                if path.startswith(_API_PREFIX):
                    _add_parameter(operation, _request_timeout(deadline_seconds))
                    _add_parameter(operation, _request_id())
                for response in operation.get("responses", {}).values():
                    headers = response.setdefault("headers", {})
                    headers.setdefault(REQUEST_ID_HEADER, _response_request_id())
                    headers.setdefault(CACHE_CONTROL_HEADER, _response_cache_control())

    amend_openapi(app, add_headers)
