"""Amendments to the OpenAPI document FastAPI generates, applied as it is handed out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

__all__ = ["amend_openapi"]


def amend_openapi(app: FastAPI, amend: Callable[[dict[str, Any]], None]) -> None:
    """Have `app.openapi()` apply `amend` to FastAPI's document before handing it out.

    FastAPI generates the document once and keeps it: `amend` changes that same document on
    every call (each fetch of /openapi.json), so it must leave it as it is when applied twice.
    Amendments apply in the order they were added.
    """
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        amend(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
