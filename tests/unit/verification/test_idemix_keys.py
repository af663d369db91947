"""Idemix issuer public keys read from IRMA XML: the real test key, and malformed XML refused."""

from __future__ import annotations

import re

import pytest

from signing_gateway.verification.idemix_keys import (
    MAX_KEY_XML_CHARS,
    IdemixKeyError,
    IdemixPublicKey,
)
from tests.unit.verification.idemix_testdata import TEST_KEY_P, TEST_KEY_Q, TEST_KEY_XML


def refusal(text: str | bytes) -> str:
    """The message IdemixPublicKey.from_xml refuses ``text`` with."""
    with pytest.raises(IdemixKeyError) as caught:
        IdemixPublicKey.from_xml(text)
    return str(caught.value)


def element(name: str) -> str:
    """The text of element ``name`` in the test key."""
    found = re.search(rf"<{name}>([0-9]+)</{name}>", TEST_KEY_XML)
    assert found is not None
    return found.group(1)


def test_test_key_is_read_whole():
    """The published test key reads with its modulus, Z, S, 12 bases, counter and expiry."""
    key = IdemixPublicKey.from_xml(TEST_KEY_XML)
    assert key.n == TEST_KEY_P * TEST_KEY_Q
    assert key.z == int(element("Z"))
    assert key.s == int(element("S"))
    assert len(key.bases) == 12
    assert key.bases[11] == int(element("Base_11"))
    assert (key.counter, key.expiry_date) == (0, 1643236269)


def test_key_reads_from_bytes_and_with_surrounding_whitespace():
    """Bytes and text with blank lines around it (as in Go raw strings) read alike."""
    key = IdemixPublicKey.from_xml(TEST_KEY_XML)
    assert IdemixPublicKey.from_xml(TEST_KEY_XML.encode()) == key
    assert IdemixPublicKey.from_xml("\n" + TEST_KEY_XML + "\n\n") == key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: x.replace("<Counter>", '<!DOCTYPE x [<!ENTITY a "1">]><Counter>'), "DTD"),
        (lambda x: x.replace("<Counter>0", "<!-- note --><Counter>0"), "DTD, comment"),
        (lambda x: x.replace("</IssuerPublicKey>", ""), "not well-formed"),
        (lambda x: x.replace("IssuerPublicKey", "IssuerPrivateKey"), "root element"),
        (lambda x: x.replace("security/idemix", "security/other"), "root element"),
        (lambda x: re.sub(r"<Z>[0-9]+</Z>", "", x), "one <Z>"),
        (lambda x: x.replace("<S>", "<n>1</n><S>"), "one <n>"),
        (lambda x: x.replace("<Counter>0", "<Counter>-1"), "<Counter> must hold a decimal"),
        (lambda x: x.replace("<ExpiryDate>1", "<ExpiryDate>0x1"), "decimal"),
        (lambda x: x.replace("<Z>", "<Z>1" + "0" * 1300), "decimal"),
        (lambda x: x.replace('num="12"', 'num="11"'), "num='11'"),
        (lambda x: x.replace("Base_3>", "Base_x>"), "Base_0 .. Base_k"),
        (lambda x: re.sub(r"<Base_[1-9][0-1]?>[0-9]+</Base_[0-9]+>", "", x), "num='12'"),
        (lambda x: x.replace(element("Z"), "1"), "Z must lie strictly between 1 and n"),
        (lambda x: x.replace(element("S"), element("n")), "S must lie strictly"),
        (lambda x: x.replace(element("Base_2"), "0"), "Base_2 must lie"),
        (lambda x: x.replace(element("n"), str(TEST_KEY_P)), "2048-bit"),
        (lambda x: x.replace(element("n"), str(TEST_KEY_P * TEST_KEY_Q * 2)), "2048-bit"),
    ],
    ids=[
        "doctype",
        "comment",
        "unclosed",
        "private-key",
        "namespace",
        "missing-Z",
        "two-n",
        "negative",
        "hex",
        "huge-number",
        "num-mismatch",
        "base-name",
        "bases-missing",
        "Z-trivial",
        "S-is-n",
        "base-zero",
        "1024-bit",
        "2049-bit",
    ],
)
def test_malformed_key_xml_is_refused_with_what_is_wrong(change, message):
    """Malformed or unusable key XML is refused, and the message names the fault."""
    assert message in refusal(change(TEST_KEY_XML))


def test_key_with_one_base_is_refused():
    """A key needs a base for the secret key and one for the metadata attribute."""
    xml = re.sub(r"<Base_(?!0>)[0-9]+>[0-9]+</Base_[0-9]+>", "", TEST_KEY_XML)
    assert "at least 2 bases" in refusal(xml.replace('num="12"', 'num="1"'))


def test_oversized_key_xml_is_refused():
    """Key XML past the size cap is refused before it is parsed."""
    assert "longer than" in refusal(TEST_KEY_XML + " " * MAX_KEY_XML_CHARS)


def test_even_modulus_is_refused():
    """A 2048-bit n that is even cannot be a product of two odd primes: refused."""
    assert "odd 2048-bit" in refusal(
        TEST_KEY_XML.replace(element("n"), str(TEST_KEY_P * TEST_KEY_Q - 1))
    )


def test_dtd_in_key_bytes_is_refused():
    """Key XML handed over as bytes is refused with a DTD just as text is."""
    xml = TEST_KEY_XML.replace("<Counter>", '<!DOCTYPE x [<!ENTITY a "1">]><Counter>')
    assert "DTD" in refusal(xml.encode())


def test_number_element_with_child_elements_is_refused():
    """A number's element holds its digits only, not elements besides them."""
    assert "<Z> must hold a decimal" in refusal(TEST_KEY_XML.replace("</Z>", "<x/></Z>"))
