"""Property tests: where the model's rules and the official schema overlap, they agree.

The model may be stricter than the schema, never looser: whatever the schema refuses, the model
refuses too. Where the rules coincide exactly, both accept.
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta

from domain_testdata import (
    NOW,
    dcc,
    dcc_born,
    dcc_with_entry,
    dcc_with_name,
    model_accepts,
    requires_shared,
    schema_accepts,
    validate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = requires_shared
BOUNDED = settings(max_examples=150, deadline=None)

name_like = st.one_of(
    st.text(alphabet="ABCXYZ<", max_size=90),
    st.text(alphabet="ABCabc< -\n1É", max_size=85),
    st.text(max_size=90),
)
date_like = st.one_of(
    st.from_regex(r"\A[0-9]{4}(-[0-9]{2}){0,2}\Z"),
    st.text(alphabet="0123456789-T:Z", max_size=12),
    st.dates(date(1850, 1, 1), date(2150, 12, 31)).map(date.isoformat),
)


@BOUNDED
@given(fnt=name_like)
def test_transliterated_name_never_looser_than_schema(fnt):
    """Any fnt the schema refuses, the model refuses; an accepted one is signed verbatim."""
    payload = dcc_with_name(fnt=fnt)
    if not schema_accepts(payload):
        assert not model_accepts(payload)
    elif model_accepts(payload):
        assert validate({"dcc": payload}).dcc.signing_payload()["nam"]["fnt"] == fnt


@BOUNDED
@given(fn=name_like)
def test_free_text_name_never_looser_than_schema(fn):
    """Any fn the schema refuses, the model refuses; an accepted one is signed in NFC form."""
    payload = dcc_with_name(fn=fn)
    if not schema_accepts(payload):
        assert not model_accepts(payload)
    elif model_accepts(payload):
        signed = validate({"dcc": payload}).dcc.signing_payload()
        assert signed["nam"]["fn"] == unicodedata.normalize("NFC", fn)


@BOUNDED
@given(dob=date_like)
def test_date_of_birth_never_looser_than_schema(dob):
    """Any dob the schema refuses, the model refuses."""
    payload = dcc(dob=dob)
    if not schema_accepts(payload):
        assert not model_accepts(payload)


@BOUNDED
@given(
    born=st.dates(date(1900, 1, 1), NOW.date()),
    precision=st.sampled_from([4, 7, 10]),
)
def test_real_past_date_of_birth_is_accepted_by_both(born, precision):
    """A real, past date of birth in 1900-2099 at any precision passes schema and model alike."""
    payload = dcc_born(born.isoformat()[:precision])
    assert schema_accepts(payload)
    assert model_accepts(payload)


@BOUNDED
@given(dt=date_like)
def test_vaccination_date_never_looser_than_schema(dt):
    """Any vaccination date the schema (with format checks) refuses, the model refuses."""
    payload = dcc_with_entry("v", dt=dt)
    if not schema_accepts(payload):
        assert not model_accepts(payload)


@BOUNDED
@given(days_ago=st.integers(0, 365 * 6))
def test_past_vaccination_date_is_accepted_by_both(days_ago):
    """Real vaccination dates up to today pass both, and are signed as given."""
    dt = (NOW.date() - timedelta(days=days_ago)).isoformat()
    payload = dcc_with_entry("v", dt=dt)
    assert schema_accepts(payload)
    assert validate({"dcc": payload}).dcc.signing_payload() == payload


@BOUNDED
@given(dn=st.integers(-3, 12), sd=st.integers(-3, 12))
def test_dose_numbers_agree_with_schema(dn, sd):
    """Dose numbers: the model accepts exactly what the schema accepts."""
    payload = dcc_with_entry("v", dn=dn, sd=sd)
    assert model_accepts(payload) == schema_accepts(payload)


@BOUNDED
@given(text=st.text(max_size=90), field=st.sampled_from(["is", "tc", "nm"]))
def test_test_entry_free_text_never_looser_than_schema(text, field):
    """Issuer, testing centre and test name: schema refusals are model refusals."""
    payload = dcc_with_entry("t", **{field: text})
    if not schema_accepts(payload):
        assert not model_accepts(payload)


#: A character a name can stand on: a letter, digit, punctuation or symbol (the Hangul fillers
#: and the blank braille pattern, which show nothing, left out: a name of them alone is refused).
_BASE = st.characters(
    codec="utf-8",
    categories=("L", "N", "P", "S"),
    exclude_characters="\u115f\u1160\u3164\uffa0\u2800",
)
#: What may follow one: combining marks, a space.
_MARK = st.characters(codec="utf-8", categories=("M", "Zs"))


@BOUNDED
@given(
    group=st.sampled_from(["v", "t", "r"]),
    fnt=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ<", min_size=1, max_size=80).filter(
        lambda s: s.strip("<")
    ),
    gn=st.lists(st.tuples(_BASE, st.text(alphabet=_MARK, max_size=3)), max_size=40)
    .map(lambda pairs: unicodedata.normalize("NFC", "".join(b + m for b, m in pairs)))
    .filter(lambda s: len(s) <= 80),
    # Born before every sample's event (the vaccination of 2022-01-10 is the earliest).
    dob=st.dates(date(1900, 1, 1), date(2022, 1, 10)).map(date.isoformat),
)
def test_signing_payload_round_trips_valid_input(group, fnt, gn, dob):
    """For valid NFC input, the payload to sign equals the input exactly."""
    payload = dcc(group, dob=dob, nam={"fnt": fnt, "gn": gn})
    assert schema_accepts(payload)
    assert validate({"dcc": payload}).dcc.signing_payload() == payload
