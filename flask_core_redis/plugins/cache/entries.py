"""One cache entry as Redis holds it:
``<namespace version>:<compute ms>:<expiry ms>:<serialized value>``.

The version is stamped by the write script, in the same atomic step that
reads it; compute time and expiry are what XFetch needs to refresh an entry
early, at random, before it expires."""

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

    def decode(self, raw: bytes | None, version: bytes) -> Entry | None:
        """The entry held in ``raw``, or None if there is none, it belongs to
        another namespace version, it is not an entry at all (written by
        something else than the cache), or its value cannot be read."""
        if raw is None:
            return None
        parts = raw.split(b":", 3)
        if len(parts) != 4 or parts[0] != version:
            return None
        compute, expires, payload = parts[1:]
        try:
            compute_ms, expires_ms = float(compute), float(expires)
        except ValueError:
            return None
        serializer = self._serializer()
        try:
            value = serializer.loads(payload)
        except Exception as error:  # any serializer's way of saying "not mine"
            self._unreadable(serializer, error)
            return None
        return Entry(value, compute_ms, expires_ms)

    def _unreadable(self, serializer: Serializer, error: Exception) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if first:
            logger.warning("cache: an entry that %s.loads cannot read (%s) is a miss; "
                           "get_or_set recomputes and overwrites it. Written by another "
                           "serializer? (Logged once.)", type(serializer).__qualname__,
                           type(error).__name__)
