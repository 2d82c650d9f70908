"""One cache entry as Redis holds it:
``<namespace version>:<compute ms>:<expiry ms>:<serialized value>``.

The version is stamped by the write script, in the same atomic step that
reads it; compute time and expiry (whole milliseconds, in ASCII digits) are
what XFetch needs to refresh an entry early, at random, before it expires.
A plain read checks that they are digits and parses them no further."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from .serializers import Serializer

logger = logging.getLogger("flask_core_redis")

#: XFetch's beta: above 1 refreshes earlier, below 1 later.
EARLY_REFRESH_BETA = 1.0


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


#: What :meth:`Codec.value` gives when there is no value (None is a value).
MISS: Any = _Miss()


class Entry:
    """A value read back with what XFetch needs to know about it."""

    __slots__ = ("compute_ms", "expires_ms", "value")

    def __init__(self, value: Any, compute_ms: float, expires_ms: float) -> None:
        self.value, self.compute_ms, self.expires_ms = value, compute_ms, expires_ms

    def due(self, now_ms: float) -> bool:
        """XFetch: refresh early with a probability that grows near expiry."""
        jitter = -math.log(1.0 - random.random())  # exponential, never log(0)
        return now_ms + self.compute_ms * EARLY_REFRESH_BETA * jitter >= self.expires_ms


def encode(serializer: Serializer, value: Any, ttl_ms: int, compute_ms: float) -> bytes:
    """The body of an entry, without the version (the write script adds it)."""
    payload = serializer.dumps(value)
    body = payload if isinstance(payload, bytes) else payload.encode()
    expires_ms = time.time() * 1000 + ttl_ms
    return f"{compute_ms:.0f}:{expires_ms:.0f}:".encode() + body


class Codec:
    """Entries in and out with the current serializer.

    An entry whose value the serializer's ``loads`` cannot read (one written
    by another serializer, before a deployment changed it) is a miss, so
    ``get_or_set`` recomputes and overwrites it. The first such entry is
    logged at WARNING, once, with the error's type only: its message may
    quote the data."""

    def __init__(self, serializer: Callable[[], Serializer]) -> None:
        self._serializer = serializer
        self._warned = False
        self._lock = threading.Lock()

    def encode(self, value: Any, ttl_ms: int, compute_ms: float) -> bytes:
        return encode(self._serializer(), value, ttl_ms, compute_ms)

    def value(self, raw: bytes | None, version: bytes) -> Any:
        """The value held in ``raw``, or :data:`MISS` if there is none, it
        belongs to another namespace version, it is not an entry at all
        (written by something else than the cache), or it cannot be read."""
        parts = fields(raw, version)
        return MISS if parts is None else self.loads(parts[3])

    def decode(self, raw: bytes | None, version: bytes) -> Entry | None:
        """The entry held in ``raw``, with its times, or None where
        :meth:`value` gives :data:`MISS`."""
        parts = fields(raw, version)
        if parts is None:
            return None
        value = self.loads(parts[3])
        if value is MISS:
            return None
        return Entry(value, float(parts[1]), float(parts[2]))

    def loads(self, payload: bytes) -> Any:
        """The value serialized in ``payload``, or :data:`MISS` if the
        serializer cannot read it."""
        serializer = self._serializer()
        try:
            return serializer.loads(payload)
        except Exception as error:  # any serializer's way of saying "not mine"
            self._unreadable(serializer, error)
            return MISS

    def _unreadable(self, serializer: Serializer, error: Exception) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if first:
            logger.warning("cache: an entry that %s.loads cannot read (%s) is a miss; "
                           "get_or_set recomputes and overwrites it. Written by another "
                           "serializer? (Logged once.)", type(serializer).__qualname__,
                           type(error).__name__)


def fields(raw: bytes | None, version: bytes) -> list[bytes] | None:
    """``[version, compute ms, expiry ms, serialized value]`` of the entry in
    ``raw``, or None if there is none, it belongs to another namespace version,
    or it is not an entry."""
    if raw is None:
        return None
    parts = raw.split(b":", 3)
    if len(parts) != 4 or parts[0] != version:
        return None
    if not (parts[1].isdigit() and parts[2].isdigit()):  # not the cache's times
        return None
    return parts
