"""An object rule (`domain.errors.object_rule`): asked beside the fields' errors, within bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from signing_gateway.domain.errors import MAX_ERRORS_LISTED, object_rule

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from signing_gateway.domain.errors import Loc

asked: list[Mapping[str, Any]] = []


def _a_below_b(data: Mapping[str, Any]) -> Iterator[tuple[Loc, PydanticCustomError]]:
    asked.append(data)
    yield ("a",), PydanticCustomError("a_below_b", "a must be below b")


class _Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: int
    b: int

    _a_below_b_beside_field_errors = object_rule(_a_below_b)


@pytest.fixture(autouse=True)
def _nothing_asked_yet() -> None:
    asked.clear()


def _errors(data: dict[str, Any]) -> list[tuple[str, tuple[str | int, ...]]]:
    with pytest.raises(ValidationError) as refused:
        _Pair.model_validate(data)
    return [(error["type"], error["loc"]) for error in refused.value.errors()]


def test_the_rule_is_named_beside_the_fields_errors():
    """A field's error and the object rule's are both named."""
    assert _errors({"a": 2, "b": "x"}) == [("int_parsing", ("b",)), ("a_below_b", ("a",))]


def test_the_rule_is_asked_below_the_listed_errors():
    """With fewer field errors than an answer lists, the rule is asked and its error added."""
    unknown = {f"k{i}": 0 for i in range(MAX_ERRORS_LISTED - 1)}
    errors = _errors({"a": 2, "b": 1, **unknown})
    assert len(errors) == MAX_ERRORS_LISTED
    assert errors[-1] == ("a_below_b", ("a",))
    assert len(asked) == 1


def test_the_rule_is_not_asked_past_the_listed_errors():
    """With as many field errors as an answer lists, the rule is not asked: they stand alone."""
    unknown = {f"k{i}": 0 for i in range(MAX_ERRORS_LISTED)}
    errors = _errors({"a": 2, "b": 1, **unknown})
    assert errors == [("extra_forbidden", (key,)) for key in unknown]
    assert asked == []
