"""EU DCC value sets, read once from the package data in ``valuesets/``.

The files are the eHealth Network value sets, copied unchanged (see ``valuesets/VERSION`` for the
release and ``valuesets/LICENSE``). They are read lazily on first use and cached for the life of
the process: nothing is read at import time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


class ValueSetName(StrEnum):
    """The value sets a DCC field can be checked against, named by their file."""

    DISEASE_AGENT_TARGETED = "disease-agent-targeted"
    VACCINE_PROPHYLAXIS = "vaccine-prophylaxis"
    VACCINE_MEDICINAL_PRODUCT = "vaccine-medicinal-product"
    VACCINE_MAH_MANF = "vaccine-mah-manf"
    COUNTRY = "country-2-codes"
    TEST_TYPE = "test-type"
    # The upstream release ships the JRC device list as an example snapshot under this name.
    TEST_MANUFACTURER = "test-manf-example"
    TEST_RESULT = "test-result"


@dataclass(frozen=True, slots=True)
class ValueSet:
    """One value set: its id, its date and the codes it knows, each marked active or not."""

    value_set_id: str
    value_set_date: str
    active: frozenset[str]
    inactive: frozenset[str]

    def __contains__(self, code: object) -> bool:
        """Tell whether the code is known at all, active or not."""
        return code in self.active or code in self.inactive


def _package_files() -> Traversable:
    return resources.files(__package__).joinpath("valuesets")


@cache
def value_set(name: ValueSetName) -> ValueSet:
    """Return the named value set, reading its file the first time it is asked for."""
    raw = json.loads(_package_files().joinpath(f"{name.value}.json").read_text(encoding="utf-8"))
    values: dict[str, dict[str, Any]] = raw["valueSetValues"]
    return ValueSet(
        value_set_id=raw["valueSetId"],
        value_set_date=raw["valueSetDate"],
        active=frozenset(code for code, entry in values.items() if entry.get("active") is True),
        inactive=frozenset(
            code for code, entry in values.items() if entry.get("active") is not True
        ),
    )


@cache
def value_sets_version() -> str:
    """Return the release of the bundled value sets, as recorded in ``valuesets/VERSION``."""
    return str(_package_files().joinpath("VERSION").read_text(encoding="utf-8")).strip()
