"""Validation failures of the domain layer, independent of any web framework.

Pydantic reports request-shape problems itself (``pydantic.ValidationError``); the rules that need
context outside the request body (the clock, the signing certificate, the issuance policy) report
through :class:`DomainValidationError` instead. Both carry a location and a human message per
problem, and the API layer renders either as one 422 problem document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, get_args

from pydantic import ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pydantic import ValidatorFunctionWrapHandler
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]

#: A rule over a whole object, read from its raw input: where each break is and its error (a
#: ValueError is reported as pydantic reports one, type `value_error`).
RawRule: TypeAlias = (
    "Callable[[Mapping[str, Any]], Iterable[tuple[Loc, PydanticCustomError | ValueError]]]"
)

#: The most located errors a failed validation's answer lists (a 422's `errors`, which its
#: `detail` counts: `signing_gateway.errors`). A 169 KB body of 15,000 unknown keys was
#: answered with 15,001 errors, 964 KB, built on the event loop. Defined here since the object
#: rules are not asked past it (`validate_with_object_rule`): a body's count from there on is a
#: lower bound, and its detail says "at least".
MAX_ERRORS_LISTED: Final = 50

#: pydantic's own error types: raised again by name, they are worded as pydantic words them.
_PYDANTIC_TYPES: Final = frozenset(get_args(ErrorType))


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


def object_rule(rule: RawRule, *, when_valid: bool = False) -> Any:  # noqa: ANN401 - pydantic's own decorator proxy
    """A model validator naming what `rule` finds beside the fields' errors (see below).

    Assigned to a class attribute of the model: ``_rule = object_rule(_raw_rule)``.
    """

    def validate(_cls: type, data: object, handler: ValidatorFunctionWrapHandler) -> Any:  # noqa: ANN401
        return validate_with_object_rule(data, handler, rule, when_valid=when_valid)

    return model_validator(mode="wrap")(classmethod(validate))  # type: ignore[arg-type]


def validate_with_object_rule(
    data: object, handler: ValidatorFunctionWrapHandler, rule: RawRule, *, when_valid: bool = False
) -> Any:  # noqa: ANN401 - whatever the wrapped validation returns
    """Validate with `handler`; if that fails, add what `rule` finds in the raw `data`.

    For a model's wrap validator. A model's rules over several fields (an after validator, or
    a field validator reading another field) run only once those fields are valid: a request
    breaking one of them and a field's own rule heard of the second only after fixing the
    first. `rule` reads the raw input instead, and its errors are added to the fields' ones,
    unless one is already reported at the same location. When `handler` succeeds, the
    model's own validators have judged the object and `rule` is not asked, unless
    `when_valid`: then `rule` is the model's only statement of itself, and what it finds in a
    valid object is refused too. Nor is it asked when the fields made `MAX_ERRORS_LISTED`
    errors or more: its errors would come after them, past those an answer lists, and reading
    every error again to add them cost more than the validation (35 ms for 100 domestic
    credentials of 64 unknown keys, 7,264 errors).
    """
    try:
        validated = handler(data)
    except ValidationError as exc:
        if not isinstance(data, Mapping) or exc.error_count() >= MAX_ERRORS_LISTED:
            raise
        errors = exc.errors()
        taken = {error["loc"] for error in errors}
        added = [(loc, error) for loc, error in rule(data) if loc not in taken]
        if not added:
            raise
        details = [_as_given(error) for error in errors]
        details += [_added(loc, error, data) for loc, error in added]
        raise ValidationError.from_exception_data(exc.title, details) from None
    if when_valid and isinstance(data, Mapping) and (found := list(rule(data))):
        details = [_added(loc, error, data) for loc, error in found]
        raise ValidationError.from_exception_data(type(validated).__name__, details)
    return validated


def _as_given(error: ErrorDetails) -> InitErrorDetails:
    """An error of a failed validation, to be raised again as it was reported."""
    if error["type"] not in _PYDANTIC_TYPES:
        # A rule's own error type. Its message is kept as formatted: given the context
        # again, a value quoting "{value}" would be formatted a second time.
        kind = PydanticCustomError(error["type"], error["msg"])
        return InitErrorDetails(type=kind, loc=error["loc"], input=error["input"])
    detail = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
    if "ctx" in error:
        detail["ctx"] = error["ctx"]
    return detail


def _added(loc: Loc, error: PydanticCustomError | ValueError, data: object) -> InitErrorDetails:
    if isinstance(error, PydanticCustomError):  # a ValueError itself: asked first
        return InitErrorDetails(type=error, loc=loc, input=data)
    return InitErrorDetails(type="value_error", loc=loc, input=data, ctx={"error": error})
