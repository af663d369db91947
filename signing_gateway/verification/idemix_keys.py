"""An Idemix issuer public key, read from the IRMA XML the Idemix server's keys are kept in.

.. code-block:: xml

    <IssuerPublicKey xmlns="http://www.zurich.ibm.com/security/idemix">
      <Counter>0</Counter>
      <ExpiryDate>1643236269</ExpiryDate>
      <Elements>
        <n>...</n> <Z>...</Z> <S>...</S>
        <Bases num="12"> <Base_0>...</Base_0> ... </Bases>
      </Elements>
      <Features>...</Features>
    </IssuerPublicKey>

Numbers are decimal. The XML comes from the operator's configuration; anything else is
refused with an `IdemixKeyError` naming what is wrong: a DTD (nothing in a key needs one, and
entity expansion is how XML is made to blow up), a missing or repeated element, a number that
is not decimal, an element outside ``(1, n)``, bases not numbered ``Base_0`` onwards. Only
2048-bit moduli are taken: CoronaCheck issues with gabi's 2048-bit system parameters
(`SystemParameters`), and the proofs' range checks depend on them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

__all__ = [
    "MAX_KEY_XML_CHARS",
    "PARAMETERS_2048",
    "IdemixKeyError",
    "IdemixPublicKey",
    "SystemParameters",
]

_NS = "{http://www.zurich.ibm.com/security/idemix}"
#: Decimal digits of a number; 1300 is well past any element of a 4096-bit key.
_DECIMAL = re.compile(r"[0-9]{1,1300}")
#: Longest key XML read: a 2048-bit key with a dozen bases is ~8 KB.
MAX_KEY_XML_CHARS = 256 * 1024
#: Fewest bases: the holder's secret key (0) and the metadata attribute (1).
_MIN_BASES = 2


class IdemixKeyError(ValueError):
    """Raised when an Idemix public key's XML is malformed or not one the gateway can use."""


@dataclass(frozen=True, slots=True)
class SystemParameters:
    """The bit lengths of gabi's ``DefaultSystemParameters`` that a verifier needs."""

    #: Modulus size.
    ln: int
    #: Size of the prime exponent ``e`` of a signature, and of its random part.
    le: int
    le_prime: int
    #: Size of an attribute; a longer one is hashed (SHA-256) first.
    lm: int
    #: Bounds of a disclosure proof's responses (attribute and ``e``).
    lm_commit: int
    le_commit: int
    #: Size of the challenge nonce.
    lstatzk: int
    #: Size of a signature's ``v`` (an issuer draws it in ``[2^(Lv-1), 2^Lv)``).
    lv: int
    #: Bound of an app's proof of its commitment: ``|v_prime_response| < 2^(LvPrimeCommit+1)``.
    lv_prime_commit: int


#: gabi ``DefaultSystemParameters[2048]``: Lh 256, Lstatzk 128, LePrime 120, Lm 256; then
#: Le = Lstatzk + Lh + Lm + 5, LeCommit = LePrime + Lstatzk + Lh, LmCommit = Lm + Lstatzk + Lh,
#: Lv 2820, LvPrimeCommit = Ln + 2 Lstatzk + Lh.
PARAMETERS_2048 = SystemParameters(
    ln=2048,
    le=645,
    le_prime=120,
    lm=256,
    lm_commit=640,
    le_commit=504,
    lstatzk=128,
    lv=2820,
    lv_prime_commit=2560,
)


@dataclass(frozen=True, slots=True)
class IdemixPublicKey:
    """An issuer's public key: modulus ``n``, ``Z``, ``S`` and the bases ``R_0 .. R_k``."""

    n: int
    z: int
    s: int
    bases: tuple[int, ...]
    counter: int
    #: Unix seconds. Kept, not enforced: CoronaCheck's verifiers read a key's expiry from
    #: their key list, not from here.
    expiry_date: int

    def __post_init__(self) -> None:
        """Refuse a key whose numbers cannot be an issuer's."""
        if self.n.bit_length() != PARAMETERS_2048.ln or self.n % 2 == 0:
            raise IdemixKeyError("n must be an odd 2048-bit modulus")
        for name, value in (("Z", self.z), ("S", self.s)):
            _check_element(name, value, self.n)
        if len(self.bases) < _MIN_BASES:
            raise IdemixKeyError(f"at least {_MIN_BASES} bases are needed")
        for index, base in enumerate(self.bases):
            _check_element(f"Base_{index}", base, self.n)

    @property
    def params(self) -> SystemParameters:
        """The system parameters of this key's modulus size."""
        return PARAMETERS_2048

    @classmethod
    def from_xml(cls, text: str | bytes) -> IdemixPublicKey:
        """Read a key from its IRMA XML; IdemixKeyError if it is malformed."""
        if len(text) > MAX_KEY_XML_CHARS:
            raise IdemixKeyError(f"key XML longer than {MAX_KEY_XML_CHARS} characters")
        # Comments and CDATA also start with "<!"; a key has neither, so all are refused.
        if (b"<!" in text) if isinstance(text, bytes) else ("<!" in text):
            raise IdemixKeyError("key XML must not hold a DTD, comment or CDATA section")
        try:
            root = ET.fromstring(text.strip())  # noqa: S314 - no DTD: no entities to expand
        except ET.ParseError as exc:
            raise IdemixKeyError(f"key XML is not well-formed: {exc}") from exc
        if root.tag != f"{_NS}IssuerPublicKey":
            raise IdemixKeyError(f"root element must be {_NS}IssuerPublicKey, not {root.tag}")
        elements = _child(root, "Elements")
        bases_element = _child(elements, "Bases")
        bases = [_decimal(base) for base in bases_element]
        for index, base in enumerate(bases_element):
            if base.tag != f"{_NS}Base_{index}":
                raise IdemixKeyError(f"Bases must be Base_0 .. Base_k in order, found {base.tag}")
        declared = bases_element.get("num")
        if declared is not None and declared != str(len(bases)):
            raise IdemixKeyError(f"Bases num={declared!r} but {len(bases)} bases are given")
        return cls(
            n=_decimal(_child(elements, "n")),
            z=_decimal(_child(elements, "Z")),
            s=_decimal(_child(elements, "S")),
            bases=tuple(bases),
            counter=_decimal(_child(root, "Counter")),
            expiry_date=_decimal(_child(root, "ExpiryDate")),
        )


def _check_element(name: str, value: int, n: int) -> None:
    if not 1 < value < n:
        raise IdemixKeyError(f"{name} must lie strictly between 1 and n")


def _child(parent: ET.Element, name: str) -> ET.Element:
    found = parent.findall(f"{_NS}{name}")
    if len(found) != 1:
        raise IdemixKeyError(f"expected one <{name}> element, found {len(found)}")
    return found[0]


def _decimal(element: ET.Element) -> int:
    text = (element.text or "").strip()
    if len(element) or not _DECIMAL.fullmatch(text):
        raise IdemixKeyError(f"<{element.tag.removeprefix(_NS)}> must hold a decimal number")
    return int(text)
