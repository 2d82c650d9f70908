"""Phone numbers and codes as the OTP plugin reads them. Every Unicode decimal
digit (fullwidth, Arabic-Indic, Devanagari ...) is folded to its ASCII digit
first, and a phone number is always written with its leading ``+``, so that
one number, or one code, has exactly one canonical spelling: limits cannot be
dodged by respelling a number, and a code typed on a keyboard in another
script still matches."""

from __future__ import annotations

import re
import unicodedata

_PHONE = re.compile(r"\+?([0-9]{7,15})")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_CODE = re.compile(r"[0-9]{4,10}")


def _ascii_digits(text: str) -> str:
    """``text`` with each Unicode decimal digit replaced by its ASCII digit."""
    return "".join(_ascii_digit(char) for char in text)


def _ascii_digit(char: str) -> str:
    value = unicodedata.decimal(char, None)
    return char if value is None else str(value)


def normalize_phone(phone: object) -> str:
    """``"+1 (555) 010-99 88"`` and ``"1 555 010 9988"`` -> ``"+15550109988"``:
    ``+`` and the number's ASCII digits, whatever digits it is typed in and
    whether or not it is typed with its ``+``; ValueError if not a phone."""
    text = _PHONE_NOISE.sub("", _ascii_digits(phone)) if isinstance(phone, str) else ""
    match = _PHONE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid phone number {phone!r}: expected 7 to 15 digits with "
                         "an optional leading '+' (spaces, dashes, dots and brackets "
                         "are ignored)")
    return "+" + match[1]


def normalize_code(code: object) -> str:
    """The code in ASCII digits, whatever script it is typed in (fullwidth
    ``"\\uff11\\uff12\\uff13\\uff14"`` -> ``"1234"``); ValueError unless 4 to 10
    decimal digits."""
    text = _ascii_digits(code) if isinstance(code, str) else ""
    if not _CODE.fullmatch(text):
        raise ValueError("invalid code: expected a string of 4 to 10 digits")
    return text
