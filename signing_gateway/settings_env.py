"""The `SIGNING_GATEWAY_*` environment, checked where reading the settings cannot check it.

pydantic-settings looks up the variables that name a setting and never sees the others: a
misspelled variable (`SIGNING_GATEWAY_AUDIT__FAIL_CLOSE`) is not read, `extra="forbid"` does not
see it, and the setting it meant keeps its default. A variable that takes JSON (a list, or a
group given whole) and does not parse stops the reading with an error that names its group,
not the variable. `serve` reports both as it reports the settings' own problems: a line per
variable, named, never its value (a secret set in the wrong variable must not reach a log).
`demo` and the app factory (`read_settings`, under `uvicorn --factory`) report an unknown
variable, and a value a setting cannot take, the same way; `create_app()` raises them as an
`InvalidSettingsError`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import takewhile

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from signing_gateway.settings import Settings
from signing_gateway.settings_doc import group_model, setting_variables

PREFIX = "SIGNING_GATEWAY_"

#: First line of the report of what is wrong with the settings (`serve`, `demo`, the factory).
PROBLEMS_HEADER = "signing-gateway: invalid settings (SIGNING_GATEWAY_*, see docs/operations.md):"

#: The variables that stand in for the command line's flags (`serve --port` and the like):
#: read besides the settings, so never unknown. `signing_gateway.cli` reads them; its tests
#: pin this list to its options.
FLAG_VARIABLES = frozenset(
    {
        "SIGNING_GATEWAY_HOST",
        "SIGNING_GATEWAY_PORT",
        "SIGNING_GATEWAY_PROBE_PORT",
        "SIGNING_GATEWAY_EVENTS_PER_PASS",
        "SIGNING_GATEWAY_LOOP",
    }
)


class InvalidSettingsError(ValueError):
    """Raised by `settings_from_environment` when the environment's settings cannot be used.

    A `SIGNING_GATEWAY_*` variable that is no setting, a value a setting cannot take, a variable
    that takes JSON holding something else. Its message is the problems, a line each, in the
    words of the report `serve` writes (never the values given); `problems` holds them.
    """

    def __init__(self, problems: list[str]) -> None:
        """Keep `problems` (lines of `read_settings`)."""
        super().__init__("\n".join(problems))
        self.problems = problems


def problems_report(problems: Iterable[str]) -> str:
    """`problems` under the report's header, a line each, as written to stderr."""
    return "\n".join([PROBLEMS_HEADER, *(f"  {line}" for line in problems)])


#: The value Kubernetes gives `<SERVICE>_PORT` for each Service in the pod's namespace
#: ("service links", on unless the pod sets `enableServiceLinks: false`).
SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://[^/\s]+:\d+", re.IGNORECASE)
#: The names of the other service-link variables of a Service named `signing-gateway[-...]`:
#: `_SERVICE_HOST`, `_SERVICE_PORT[_<port name>]`, `_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`.
#: A Service name has no "__" (it would take "--"), so no setting of a group matches.
_SERVICE_LINK_NAME = re.compile(
    r"SIGNING_GATEWAY(?:_(?!_)[A-Z0-9_]*?)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)"
)


def is_service_link(name: str, value: str) -> bool:
    """Whether `name=value` is one of Kubernetes' service-link variables, not a setting.

    A Service named `signing-gateway` (or `signing-gateway-probe`, ...) in the namespace puts
    them into every pod: `SIGNING_GATEWAY_SERVICE_HOST=10.96.0.5`,
    `SIGNING_GATEWAY_PORT=tcp://10.96.0.5:8080`, and so on. They are not the operator's, so
    they are passed over rather than refused (or, for `_PORT`, read as a port).
    """
    upper = name.upper()
    if "__" in upper:
        return False
    if upper.endswith("_PORT") and SERVICE_LINK_VALUE.fullmatch(value):
        return True
    return _SERVICE_LINK_NAME.fullmatch(upper) is not None


def _ours(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables under the prefix, by their upper-case name (settings ignore the case)."""
    return {
        name.upper(): value for name, value in environ.items() if name.upper().startswith(PREFIX)
    }


def unknown_variables(environ: Mapping[str, str], also_read: Iterable[str]) -> list[str]:
    """A line for each `SIGNING_GATEWAY_*` variable no setting (nor `also_read`) has.

    `also_read`: the variables read besides the settings (those of `serve`'s flags).
    """
    known = {variable.env_var for variable in setting_variables()} | set(also_read)
    suffixes = sorted(name.removeprefix(PREFIX) for name in known)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or is_service_link(name, environ[name]):
            continue
        if upper in known:
            continue
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), suffixes, n=1)
        hint = (
            f"; did you mean {PREFIX}{close[0]}?" if close else " (docs/operations.md lists them)"
        )
        problems.append(f"{name}: unknown setting{hint}")
    return problems


def unparsed_json(environ: Mapping[str, str]) -> list[str]:
    """A line for each variable that takes JSON (a list, a whole group) and holds something else."""
    ours = _ours(environ)
    problems = []
    for variable in setting_variables():
        value = ours.get(variable.env_var)
        if variable.json_example is None or not value:  # empty: not parsed, as by the settings
            continue
        try:
            json.loads(value)
        except ValueError:
            problems.append(f"{variable.env_var}: must be JSON, e.g. {variable.json_example}")
    return problems


def unknown_keys(environ: Mapping[str, str]) -> list[str]:
    """A line for each key that is no setting in a group given whole as JSON.

    pydantic drops such a key without a word (`SIGNING_GATEWAY_AUDIT='{"fail_close": false}'`
    left the audit failing closed), as the settings never see a misspelled variable. The line
    names the variable and the key's path in its JSON (names, never values); a value that is
    not an object where a group is wanted is left to the settings to refuse.
    """
    ours = _ours(environ)
    problems: list[str] = []
    for path, group in _groups(Settings, ()):
        variable = PREFIX + "__".join(path).upper()
        try:
            given = json.loads(ours.get(variable) or "null")  # empty: not read, as by the settings
        except ValueError:
            continue  # `unparsed_json` names it
        problems += (f"{variable}: {line}" for line in _keys_outside(given, group, ()))
    return problems


def _groups(
    model: type[BaseModel], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """Every group of settings under `model`, by its path, nested groups included."""
    for name, info in model.model_fields.items():
        group = group_model(info)
        if group is not None:
            yield (*path, name), group
            yield from _groups(group, (*path, name))


def _keys_outside(given: object, group: type[BaseModel], path: tuple[str, ...]) -> Iterator[str]:
    """`given`'s keys that `group` has no setting for (read in any case, as the variables are)."""
    if not isinstance(given, dict):
        return
    fields = group.model_fields
    for key, value in given.items():
        name = str(key).lower()
        info = fields.get(name)
        if info is None:
            close = difflib.get_close_matches(name, list(fields), n=1)
            inside = "".join(f"{part}." for part in path)
            hint = (
                f"; did you mean {inside}{close[0]}?"
                if close
                else " (docs/operations.md lists them)"
            )
            yield f"{inside}{key}: unknown setting{hint}"
            continue
        nested = group_model(info)
        if nested is not None:
            yield from _keys_outside(value, nested, (*path, name))


def settings_problems(exc: ValidationError) -> list[str]:
    """What is wrong with the settings, one line per problem, named as the variables to set.

    Submitted values are left out: a secret set in the wrong variable must not reach a log.
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        # A list's item is named by its place in the list (counted from 1, as the trust files
        # are), not as a group would be: the index appended to the name makes no variable.
        names = list(takewhile(lambda part: not isinstance(part, int), error["loc"]))
        index = error["loc"][len(names) : len(names) + 1]
        loc = "__".join(str(part).upper() for part in names)
        where = f"{PREFIX}{loc}" if loc else "settings"
        place = f"item {int(index[0]) + 1}: " if index else ""
        lines.append(f"{where}: {place}{_message(error)}")
    return lines


#: pydantic's messages that name a Python class, in an operator's words. Its own message for
#: a path names the class, and the class's module differs between Python versions
#: (`pathlib._local.Path` from 3.13 on).
_PLAIN_MESSAGES = {"path_type": "Input is not a file path"}


def _message(error: ErrorDetails) -> str:
    """What `error` says of the value, without pydantic's prefix or a Python class's name."""
    return _PLAIN_MESSAGES.get(error["type"], error["msg"].removeprefix("Value error, "))


def read_settings(
    also_read: Iterable[str], build: Callable[[], Settings] = Settings
) -> tuple[Settings | None, list[str]]:
    """The settings `build` reads from the environment (None if it cannot), and what is wrong.

    The problems, one line each: every `SIGNING_GATEWAY_*` variable no setting (nor
    `also_read`) has, and every key of a group given as JSON that is no setting, which leave
    the settings readable; then every value a setting cannot take, or a variable that takes
    JSON holding something else, which leaves them None.
    """
    problems = unknown_variables(os.environ, also_read) + unknown_keys(os.environ)
    try:
        settings = build()
    except ValidationError as exc:
        return None, problems + settings_problems(exc)
    except SettingsError as exc:
        # A variable that takes JSON holds something else; the error names only its group.
        return None, problems + (unparsed_json(os.environ) or [f"settings: {exc}"])
    return settings, problems


def settings_from_environment() -> Settings:
    """The settings from the `SIGNING_GATEWAY_*` environment, unknown variables refused.

    Raises:
        InvalidSettingsError: what `read_settings` finds wrong, rather than pydantic's errors,
            which name a group for a variable and repeat the values given.
    """
    settings, problems = read_settings(FLAG_VARIABLES)
    if settings is None or problems:
        raise InvalidSettingsError(problems)
    return settings
