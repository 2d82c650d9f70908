"""Default ``@cached`` keys: the arguments in a canonical, type-aware encoding.

Each value is written as a type tag and its content, with a length in front of
anything of variable length, so that no two different values share an
encoding: ``(1, 2)`` and ``[1, 2]``, ``{1: "x"}`` and ``{"1": "x"}``, a date
and its string, ``1``, ``1.0`` and ``True`` all differ. Members of dicts and
sets are written in the order of their own encodings, so insertion order does
not matter. A datetime or time carries its ``fold`` and its tzinfo's identity,
not only its offset: Europe/Paris and a fixed UTC+01:00 agree in January, not
in July. Only the types below are encoded, matched exactly (a subclass may
define its own equality), and only the tzinfos whose identity is known: any
other value has no canonical form, and the decorator asks for ``key=``."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

#: What a scalar of each type becomes; terminated by ';' or length-prefixed.
_SCALARS: dict[type, Callable[[Any], str]] = {
    type(None): lambda value: "N",
    bool: lambda value: "T" if value else "F",
    int: lambda value: f"i{value:x};",  # hex: no limit on the number of digits
    float: lambda value: f"f{value.hex()};",  # exact; -0.0, nan and inf included
    str: lambda value: f"s{len(value)}:{value}",
    bytes: lambda value: f"b{len(value)}:{value.hex()}",
    datetime.datetime: lambda value: f"W{value.isoformat()};{value.fold}" + _zone(value),
    datetime.date: lambda value: f"D{value.isoformat()};",
    datetime.time: lambda value: f"H{value.isoformat()};{value.fold}" + _zone(value),
    datetime.timedelta: lambda value: f"R{value.days},{value.seconds},{value.microseconds};",
    decimal.Decimal: lambda value: f"M{value};",
    uuid.UUID: lambda value: f"U{value.hex};",
}
_SEQUENCES: dict[type, str] = {list: "l", tuple: "t"}
_SETS: dict[type, str] = {set: "S", frozenset: "Z"}

ENCODED_TYPES = ("None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, "
                 "date, datetime and time (naive, or with a datetime.timezone or a "
                 "zoneinfo.ZoneInfo), timedelta, Decimal, UUID and Enum members")


class NotCanonical(TypeError):
    """A value has no canonical encoding; ``where`` says where it sits."""

    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__name__)
        self.value = value
        self.where: list[str] = []

    def describe(self, name: str) -> str:
        where = "".join(reversed(self.where))
        kind = "a value nested too deeply, or containing itself" if isinstance(
            self.value, RecursionError) else f"a {type(self.value).__name__}"
        return f"argument {name!r}{' at ' + where if where else ''} is {kind}"


def canonical(value: Any) -> str:
    """``value``'s canonical encoding; :class:`NotCanonical` if it has none."""
    try:
        return _encode(value)
    except RecursionError as error:
        raise NotCanonical(error) from None


def _encode(value: Any) -> str:
    kind = type(value)
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(value)
    if kind in _SEQUENCES:
        return f"{_SEQUENCES[kind]}{len(value)}:" + "".join(
            _located(item, f"[{index}]") for index, item in enumerate(value))
    if kind is dict:
        pairs = sorted((_located(key, " (a key)"), _located(item, f"[{key!r}]"))
                       for key, item in value.items())
        return f"d{len(pairs)}:" + "".join(key + item for key, item in pairs)
    if kind in _SETS:
        members = sorted(_located(member, " (a member)") for member in value)
        return f"{_SETS[kind]}{len(members)}:" + "".join(members)
    if isinstance(value, enum.Enum):
        return "E" + _encode(f"{kind.__module__}.{kind.__qualname__}") + _encode(value.name)
    raise NotCanonical(value)


def _zone(value: datetime.datetime | datetime.time) -> str:
    """The identity of ``value``'s tzinfo: a ``timezone`` by its offset and
    name, a ``ZoneInfo`` by its key."""
    zone = value.tzinfo
    if zone is None:
        return "-"
    if type(zone) is datetime.timezone:
        return "o" + _encode(zone.utcoffset(None)) + _encode(zone.tzname(None))
    if type(zone) is zoneinfo.ZoneInfo and zone.key is not None:  # no key: from a file
        return "z" + _encode(zone.key)
    error = NotCanonical(zone)
    error.where.append(".tzinfo")
    raise error


def _located(value: Any, where: str) -> str:
    try:
        return _encode(value)
    except NotCanonical as error:
        error.where.append(where)
        raise
