"""The configuration reference in docs/operations.md, generated from the settings model.

    python -m signing_gateway.settings_doc                         # print the table
    python -m signing_gateway.settings_doc --write docs/operations.md   # refresh it in place

The table sits between two marker comments in the document; a unit test fails when the
document's table differs from the model's, so the reference cannot drift from the code.
`setting_variables` lists the same variables, and the groups, for `serve`'s check of the
environment (`signing_gateway.settings_env`).
"""

from __future__ import annotations

import argparse
import enum
import functools
import json
import operator
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from signing_gateway.settings import Settings

BEGIN_MARKER = "<!-- BEGIN settings table: python -m signing_gateway.settings_doc --write -->"
END_MARKER = "<!-- END settings table -->"
_ENV_PREFIX = "SIGNING_GATEWAY_"
_NESTED = "__"


@dataclass(frozen=True)
class SettingDoc:
    """One leaf setting as an operator sets it."""

    env_var: str
    type_name: str
    default: str
    description: str


def _type_name(info: FieldInfo) -> str:
    """The type an operator gives, then its bounds: `int, > 0, <= 10`; `float, >= 0`.

    pydantic keeps the bounds of `PositiveInt` or of `Field(le=10)` beside the annotation,
    not in it: without them here the table said `int` of a setting that refuses 0 and 11.
    """
    text = repr(_shown(info.annotation)) if info.annotation is not None else "Any"
    # `pathlib._local.` first: Path's module from Python 3.13 on.
    for noise in ("typing.", "pathlib._local.", "pathlib.", "<class '", "'>"):
        text = text.replace(noise, "")
    bounds = _bounds([*info.metadata, *_nested_metadata(info.annotation)])
    return ", ".join([text, *bounds])


#: How a bound of `annotated_types` reads in the table, by its attribute: the lower bounds,
#: the upper ones, the length.
_BOUND_SIGNS = (
    {"gt": ">", "ge": ">="},
    {"lt": "<", "le": "<="},
    {"min_length": "length >="},
)


def _bounds(metadata: Sequence[object]) -> list[str]:
    """The tightest bound of each kind among a setting's metadata: `>= 32` over `> 0`."""
    shown = []
    for kind, signs in enumerate(_BOUND_SIGNS):
        found = [
            (getattr(item, name), sign)
            for item in metadata
            for name, sign in signs.items()
            if getattr(item, name, None) is not None
        ]
        if found:
            # The smallest upper bound holds, the largest lower one (or length).
            value, sign = (min if kind == 1 else max)(found, key=lambda bound: bound[0])
            shown.append(f"{sign} {value}")
    return shown


def _nested_metadata(annotation: Any) -> list[object]:  # noqa: ANN401 - any field's annotation
    """The metadata of the `Annotated` types inside `annotation` (`PositiveInt | None`)."""
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return [*metadata, *_nested_metadata(base)]
    return [item for arg in get_args(annotation) for item in _nested_metadata(arg)]


def _shown(annotation: Any) -> Any:  # noqa: ANN401 - any field's annotation
    """`annotation` as an operator reads it, without what `Annotated` adds to a type.

    `FileSetting | None` is shown as `Path | None`, `PositiveInt | None` as `int | None` (its
    bound follows the type: `_type_name`), `dict[NameSetting, FileSetting]` as
    `dict[str, Path]`; a validator is code, not type.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _shown(get_args(annotation)[0])
    if origin in (dict, list):
        return origin[tuple(_shown(arg) for arg in get_args(annotation))]
    if origin in (Union, UnionType):
        members = get_args(annotation)
        shown_members = [_shown(member) for member in members]
        if shown_members != list(members):
            return functools.reduce(operator.or_, shown_members)
    return annotation


def _format_default(value: Any) -> str:  # noqa: ANN401 - any setting value
    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    if value is None:
        return "unset"
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


def group_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a group of settings (`eu_signer`, `auth`, ...); None for a leaf setting."""
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_var(path: tuple[str, ...]) -> str:
    return _ENV_PREFIX + _NESTED.join(path).upper()


def _leaves(model: BaseModel, path: tuple[str, ...]) -> Iterator[SettingDoc]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        here = (*path, name)
        if group_model(info) is not None:
            # Recurse into the group's default instance, so per-group defaults (each signer's
            # URL) are shown rather than the bare class defaults.
            yield from _leaves(value, here)
            continue
        yield SettingDoc(
            env_var=_env_var(here),
            type_name=_type_name(info),
            default=_format_default(value),
            description=(info.description or "").strip(),
        )


def setting_docs() -> list[SettingDoc]:
    """Every leaf setting of `Settings`, in declaration order, with its defaults."""
    defaults = Settings.model_construct()
    # model_construct skips validation and fills declared defaults only; that is exactly the
    # "nothing set in the environment" view the reference documents.
    return list(_leaves(defaults, ()))


@dataclass(frozen=True)
class SettingVariable:
    """A variable the settings read: a leaf setting, or a whole group given as one JSON object."""

    env_var: str
    #: What a value looks like when the variable takes JSON (a list, a group); None otherwise.
    json_example: str | None


def setting_variables(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[SettingVariable]:
    """Every variable `model`'s settings are read from: its groups and their leaves, in order."""
    for name, info in model.model_fields.items():
        here = (*path, name)
        group = group_model(info)
        if group is not None:
            yield SettingVariable(_env_var(here), '{"setting": "value"}')
            yield from setting_variables(group, here)
        else:
            yield SettingVariable(_env_var(here), _json_example(info.annotation))


def _json_example(annotation: Any) -> str | None:  # noqa: ANN401 - any field's annotation
    """An example of the JSON a variable of this type takes; None for a plain value."""
    origin = get_origin(annotation)
    if origin in {Union, UnionType}:
        examples = (_json_example(arg) for arg in get_args(annotation) if arg is not NoneType)
        return next((example for example in examples if example is not None), None)
    if origin is dict:
        return '{"key": "value"}'
    if origin not in {list, tuple, set, frozenset}:
        return None
    item = get_args(annotation)[0]
    if item is Path:
        return json.dumps(["/path/to/file.pem"])
    if get_origin(item) is Literal:
        return json.dumps([str(choice) for choice in get_args(item)[:2]])
    return json.dumps(["value"])


def render_table() -> str:
    """The markdown table of every setting (what sits between the markers)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|") or "—"

    lines = [
        "| Environment variable | Type | Default | Meaning |",
        "|---|---|---|---|",
    ]
    lines.extend(
        f"| `{d.env_var}` | `{cell(d.type_name)}` | `{cell(d.default)}` | {cell(d.description)} |"
        # Alphabetical: groups stay together (shared prefix) and moving a field in
        # settings.py does not churn the document.
        for d in sorted(setting_docs(), key=lambda d: d.env_var)
    )
    return "\n".join(lines) + "\n"


def splice(document: str, table: str) -> str:
    """`document` with the text between the markers replaced by `table`."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = document.index(END_MARKER)
    return document[:start] + "\n" + table + document[end:]


def table_in(document: str) -> str:
    """The table currently between the markers of `document`."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    return document[start : document.index(END_MARKER)].lstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table, or rewrite it inside the document given with --write."""
    parser = argparse.ArgumentParser(prog="python -m signing_gateway.settings_doc")
    parser.add_argument("--write", type=Path, help="document whose marked table to refresh")
    args = parser.parse_args(argv)
    table = render_table()
    if args.write is None:
        sys.stdout.write(table)
        return 0
    args.write.write_text(splice(args.write.read_text(encoding="utf-8"), table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
