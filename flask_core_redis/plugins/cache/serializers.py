"""How cached values become bytes: JSON by default, never pickle; a plugin may
supply another serializer through the ``core_redis_serializer`` hook.

The JSON serializer accepts the same values with orjson as with the standard
library, and gives them back the same: it refuses, before either encoder sees
them, whatever the two would write differently or one of them would refuse
(NaN and infinities, non-``str`` dict keys, dates, enums, subclasses of the
JSON types, integers beyond 64 bits, lone surrogates, very deep nesting)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, Protocol

#: Containers nested deeper than this are refused: orjson's own limit.
MAX_DEPTH = 254
#: The integers orjson writes; the standard library is held to them too.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1

_SCALARS = (bool, type(None))
_CONTAINERS = (list, tuple, dict)


class Serializer(Protocol):
    """``dumps`` returns text (stored as UTF-8) or any bytes; ``loads`` is
    given what was stored, always as bytes."""

    def dumps(self, value: Any) -> str | bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """JSON, with orjson when it is installed (or as ``use_orjson`` says).
    Never pickle. A tuple comes back as a list; every other accepted value
    comes back equal, and of the same types."""

    def __init__(self, use_orjson: bool | None = None) -> None:
        orjson = _orjson() if use_orjson is not False else None
        if use_orjson and orjson is None:
            raise ImportError("orjson is not installed: pip install 'flask-core-redis[orjson]'")
        if orjson is None:
            self._dumps: Callable[[Any], str | bytes] = functools.partial(
                json.dumps, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                check_circular=False)  # check_json refuses cycles (as too deep)
            self._loads: Callable[[bytes], Any] = json.loads
        else:
            self._dumps, self._loads = orjson.dumps, orjson.loads

    def dumps(self, value: Any) -> str | bytes:
        check_json(value)
        return self._dumps(value)

    def loads(self, data: bytes) -> Any:
        return self._loads(data)


def _orjson() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


class _Refused(Exception):
    def __init__(self, kind: type[Exception], problem: str) -> None:
        super().__init__(problem)
        self.kind, self.problem, self.where = kind, problem, ["value"]


def check_json(value: Any) -> None:
    """Raise TypeError (a type JSON cannot hold) or ValueError (a value it
    cannot hold alike in both encoders), naming where in ``value`` it is."""
    try:
        _check(value, 0)
    except _Refused as refused:
        where = "".join(refused.where[:1] + refused.where[:0:-1])
        raise refused.kind(f"the cache stores JSON values: {where} {refused.problem}") from None


def _check(value: Any, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _check_text(value)
    elif kind is int:
        if not MIN_INT <= value <= MAX_INT:
            raise _Refused(ValueError, f"is {value}, beyond the 64-bit integers JSON "
                                       "encoders agree on")
    elif kind is float:
        if not math.isfinite(value):
            raise _Refused(ValueError, f"is {value!r}, which JSON has no form for")
    elif kind in _CONTAINERS:
        if depth >= MAX_DEPTH:
            raise _Refused(ValueError, f"nests containers deeper than {MAX_DEPTH} levels "
                                       "(or contains itself)")
        _check_members(value, depth + 1)
    elif kind not in _SCALARS:
        raise _Refused(TypeError, f"is a {kind.__name__}, which is not JSON-serializable "
                                  "(the cache stores dict with str keys, list, tuple, str, "
                                  "int, float, bool and None, exactly those types)")


def _check_members(container: Any, depth: int) -> None:
    if type(container) is dict:
        for key, item in container.items():
            if type(key) is not str:
                raise _Refused(TypeError, f"has the key {key!r} ({type(key).__name__}); "
                                          "JSON object keys are str")
            _located(key, depth, " (a key)")
            _located(item, depth, f"[{key!r}]")
    else:
        for index, item in enumerate(container):
            _located(item, depth, f"[{index}]")


def _located(value: Any, depth: int, where: str) -> None:
    try:
        _check(value, depth)
    except _Refused as refused:
        refused.where.append(where)
        raise


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused(ValueError, "contains a lone surrogate, which UTF-8 cannot "
                                       "encode") from None
