"""`hcert_issuer_form`: a DCC as the CoronaCheck hcert issuance server writes it, place by place.

The expected records are written out here from that server's DCC records (one field each, in
the order it declares them), not derived from the code under test: a member missing from one
of them, or one too many, or the wrong empty value, shows as a difference.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from signing_gateway.verification.hcert import hcert_issuer_form
from tests.support.credentials import sample_dcc

#: Every member of ``nam`` and of an entry of each group, as the issuer writes it left out.
#: A test's nm and ma are absent: left out, they are not written at all.
EMPTY_RECORDS: dict[str, dict[str, object]] = {
    "nam": {"fn": "", "fnt": "", "gn": "", "gnt": ""},
    "v": {
        "tg": "",
        "vp": "",
        "mp": "",
        "ma": "",
        "dn": 0,
        "sd": 0,
        "dt": "",
        "co": "",
        "is": "",
        "ci": "",
    },
    "t": {"tg": "", "tt": "", "sc": "", "tr": "", "tc": "", "co": "", "is": "", "ci": ""},
    "r": {"tg": "", "fr": "", "co": "", "is": "", "df": "", "du": "", "ci": ""},
}


def _with(place: str, *members: dict[str, Any]) -> dict[str, Any]:
    """A DCC whose ``nam`` (one member) or group ``place`` (one entry each) is ``members``."""
    dcc = {k: v for k, v in sample_dcc().items() if k not in {"v", "t", "r"}}
    if place == "nam":
        (dcc["nam"],) = members
    else:
        dcc[place] = list(members)
    return dcc


@pytest.mark.parametrize("place", EMPTY_RECORDS)
def test_every_member_left_out_is_written_empty_in_its_place(place):
    """Each member of each record is written "" (dn and sd 0) when left out, every entry too.

    The request itself is left as it was: the form is a new DCC, sharing no changed part with it.
    """
    asked = _with(place, {}) if place == "nam" else _with(place, {}, {})
    before = copy.deepcopy(asked)
    entries = EMPTY_RECORDS[place] if place == "nam" else [EMPTY_RECORDS[place]] * 2
    assert hcert_issuer_form(asked) == {**before, place: entries}
    assert asked == before


@pytest.mark.parametrize("place", EMPTY_RECORDS)
def test_members_sent_empty_stay_empty_but_a_tests_nm_and_ma(place):
    """Pin that only a test's empty nm and ma are left out, in no other place, no other member."""
    record = {**EMPTY_RECORDS[place], "nm": "", "ma": ""} if place == "t" else EMPTY_RECORDS[place]
    asked = _with(place, record)
    form = hcert_issuer_form(asked)
    written = form["nam"] if place == "nam" else form[place][0]
    assert written == EMPTY_RECORDS[place]


def test_values_sent_are_kept_and_the_request_is_left_as_it_was():
    """A DCC the issuer writes as it is comes back equal, its nm and ma too."""
    named_test = {**EMPTY_RECORDS["t"], "tc": "Centre", "nm": "PCR", "ma": "1232"}
    for asked in (sample_dcc(), _with("t", named_test)):
        before = copy.deepcopy(asked)
        assert hcert_issuer_form(asked) == before
        assert asked == before
