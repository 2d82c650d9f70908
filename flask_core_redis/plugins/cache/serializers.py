"""How cached values become bytes: JSON by default, never pickle; a plugin may
supply another serializer through the ``core_redis_serializer`` hook."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Protocol


class Serializer(Protocol):
    """``dumps`` returns text (stored as UTF-8) or any bytes; ``loads`` is
    given what was stored, always as bytes."""

    def dumps(self, value: Any) -> str | bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """JSON, with orjson when it is installed. Never pickle."""

    def __init__(self) -> None:
        try:
            import orjson
        except ImportError:
            self._dumps: Callable[[Any], str | bytes] = functools.partial(
                json.dumps, separators=(",", ":"), ensure_ascii=False)
            self._loads: Callable[[Any], Any] = json.loads
        else:
            self._dumps, self._loads = orjson.dumps, orjson.loads

    def dumps(self, value: Any) -> str | bytes:
        try:
            return self._dumps(value)
        except TypeError as error:
            raise TypeError(f"the cache stores JSON values; {type(value).__name__} is not "
                            f"JSON-serializable ({error})") from None

    def loads(self, data: bytes) -> Any:
        return self._loads(data)
