"""Validation failures of the domain layer, independent of any web framework.

Pydantic reports request-shape problems itself (``pydantic.ValidationError``); the rules that need
context outside the request body (the clock, the signing certificate, the issuance policy) report
through :class:`DomainValidationError` instead. Both carry a location and a human message per
problem, and the API layer renders either as one 422 problem document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: where it is (wire names, list indexes) and what is wrong."""

    loc: Loc
    msg: str


class DomainValidationError(Exception):
    """Raised when a request is well formed but breaks a rule that depends on context."""

    def __init__(self, errors: list[FieldError]) -> None:
        """Keep the individual problems; the message lists them for logs."""
        if not errors:
            raise ValueError("DomainValidationError needs at least one FieldError")
        self.errors = list(errors)
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in self.errors))

    @classmethod
    def from_pydantic(cls, exc: ValidationError, *, prefix: Loc = ()) -> DomainValidationError:
        """Translate a pydantic ValidationError, optionally nesting its locations under prefix."""
        return cls(
            [FieldError(loc=(*prefix, *error["loc"]), msg=error["msg"]) for error in exc.errors()]
        )
