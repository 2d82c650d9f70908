"""Value parsers for configuration keys, public so that a plugin declares its
own keys exactly as the core does::

    from flask_core_redis import Key, parsers

    VISITS_TTL = Key("VISITS_TTL", 60, parsers.integer(minimum=1),
                     "Visits: seconds a counter lives.")

A parser takes the raw value (a string from the environment or ``.env``, or
any object from ``app.config``) and returns the parsed one, or raises
:class:`InvalidValue` whose message says what would be accepted; the key's
name and the offending value are added by the caller."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Parser = Callable[[Any], Any]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class InvalidValue(ValueError):
    """A configuration value is wrong; the message says what would be accepted."""


def text(value: Any) -> str:
    """Any value, as a string."""
    return str(value)


def names(value: Any) -> tuple[str, ...]:
    """A list of names, or names separated by commas: each stripped, the
    empty ones left out."""
    items = value if isinstance(value, list | tuple | set | frozenset) else str(value).split(",")
    stripped = (str(item).strip() for item in items)
    return tuple(name for name in stripped if name)


def boolean(value: Any) -> bool:
    """``True``/``False``, or one of the words 1, true, yes, on / 0, false, no, off."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise InvalidValue(f"expected a boolean: one of {sorted(TRUE_WORDS | FALSE_WORDS)}")


def integer(minimum: int, maximum: int | None = None) -> Parser:
    """A parser of whole numbers from ``minimum`` to ``maximum`` (inclusive),
    written in ASCII digits with an optional ``-`` (not ``+5``, ``٣`` or ``²``)."""
    expected = f"expected an integer >= {minimum}" + (
        f" and <= {maximum}" if maximum is not None else "")

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise InvalidValue(expected)
        text = str(value).strip()
        if not isinstance(value, int) and not re.fullmatch(r"-?[0-9]+", text):
            raise InvalidValue(f"{expected}, in ASCII digits")
        number = int(text)
        if number < minimum or (maximum is not None and number > maximum):
            raise InvalidValue(expected)
        return number

    return parse


def number(above: float, at_most: float = math.inf, expected: str | None = None) -> Parser:
    """A parser of finite numbers greater than ``above`` and at most ``at_most``;
    ``expected`` overrides the message that says so."""
    message = expected or f"expected a finite number above {above:g} and at most {at_most:g}"

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise InvalidValue(message)
        try:
            parsed = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a huge int
            raise InvalidValue(message) from None
        if not (above < parsed <= at_most and math.isfinite(parsed)):
            raise InvalidValue(message)
        return parsed

    return parse


def choice(*options: str) -> Parser:
    """A parser of one word out of ``options`` (case-insensitive)."""
    def parse(value: Any) -> str:
        word = str(value).strip().lower()
        if word not in options:
            raise InvalidValue(f"expected one of {', '.join(options)}")
        return word

    return parse
