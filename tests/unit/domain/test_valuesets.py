"""The bundled value sets: where they come from, and that they load lazily."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from signing_gateway.domain.valuesets import ValueSetName, value_set, value_sets_version

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def test_version_of_bundled_value_sets_is_recorded():
    """The package records which value-set release it ships."""
    assert value_sets_version().startswith("eu-dcc-valuesets 2.12.0")


@pytest.mark.parametrize("name", list(ValueSetName))
def test_every_value_set_loads(name):
    """Every value set the model uses is present and has active codes."""
    codes = value_set(name)
    assert codes.active
    assert codes.value_set_id


#: Each value set's upstream id and date, as eu-dcc-valuesets 2.12.0 gives them.
IDS_AND_DATES = {
    ValueSetName.DISEASE_AGENT_TARGETED: "disease-agent-targeted 2021-04-27",
    ValueSetName.VACCINE_PROPHYLAXIS: "sct-vaccines-covid-19 2023-01-25",
    ValueSetName.VACCINE_MEDICINAL_PRODUCT: "vaccines-covid-19-names 2022-11-30",
    ValueSetName.VACCINE_MAH_MANF: "vaccines-covid-19-auth-holders 2022-01-26",
    ValueSetName.COUNTRY: "country-2-codes 2019-11-01",
    ValueSetName.TEST_TYPE: "covid-19-lab-test-type 2021-04-27",
    ValueSetName.TEST_MANUFACTURER: "covid-19-lab-test-manufacturer-and-name 2021-07-01",
    ValueSetName.TEST_RESULT: "covid-19-lab-result 2021-04-27",
}


def test_value_sets_are_named_by_their_ids():
    """Each value set carries its upstream id (errors name it) and date, not one for the other."""
    found = {
        name: f"{value_set(name).value_set_id} {value_set(name).value_set_date}"
        for name in IDS_AND_DATES
    }
    assert found == IDS_AND_DATES
    assert set(IDS_AND_DATES) == set(ValueSetName)


def test_inactive_codes_are_known_but_not_active():
    """Withdrawn codes stay known (for a precise message) but are not active."""
    products = value_set(ValueSetName.VACCINE_MEDICINAL_PRODUCT)
    assert "NVX-CoV2373" in products
    assert "NVX-CoV2373" not in products.active
    assert "EU/1/20/1528" in products.active


def test_importing_the_domain_reads_no_value_set():
    """Importing the domain package reads nothing; the first validation does."""
    code = (
        "import signing_gateway.domain\n"
        "from signing_gateway.domain.valuesets import value_set\n"
        "print(value_set.cache_info().currsize)\n"
    )
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0"


def _section(document: str, heading: str) -> str:
    """The text of one `## ` section of a Markdown document, up to the next such heading."""
    assert f"\n## {heading}\n" in document, f"no section '{heading}'"
    start = document.index(f"\n## {heading}\n")
    end = document.find("\n## ", start + 1)
    return " ".join(document[start : end if end != -1 else None].split())


def test_the_operations_guide_says_which_devices_the_bundled_list_knows():
    """The guide names the bundled release and its device list as the package holds them.

    The device list is the release's 2021 example: a rapid antigen test of any later device,
    the official example's 532 among them, is refused as unknown. The guide said nothing of
    it, so an operator heard of it from callers' 422s; it must change when the data does.
    """
    section = _section(OPERATIONS.read_text(encoding="utf-8"), "DCC value sets")
    release = value_sets_version().split(" (")[0]
    devices = value_set(ValueSetName.TEST_MANUFACTURER)
    assert f"release {release}" in section
    assert f"`{devices.value_set_id}` of {devices.value_set_date}" in section
    assert f"with {len(devices.active)} active devices" in section
    assert "532" not in devices
    assert f"`{ValueSetName.TEST_MANUFACTURER.value}.json`" in section
    where = files("signing_gateway.domain") / "valuesets"
    assert where.joinpath(f"{ValueSetName.TEST_MANUFACTURER.value}.json").is_file()
