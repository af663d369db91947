"""The `SIGNING_GATEWAY_*` environment, checked where reading the settings cannot check it.

A variable that takes JSON (a list, or a group given whole) and does not parse stops
pydantic-settings with an error that names its group, not the variable. `serve` reports it as
it reports the settings' own problems: a line per variable, named, never its value (a secret
set in the wrong variable must not reach a log).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from signing_gateway.settings_doc import setting_variables

PREFIX = "SIGNING_GATEWAY_"


def _ours(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables under the prefix, by their upper-case name (settings ignore the case)."""
    return {
        name.upper(): value for name, value in environ.items() if name.upper().startswith(PREFIX)
    }


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
