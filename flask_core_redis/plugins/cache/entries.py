"""One cache entry as Redis holds it:
``<namespace version>:<compute ms>:<expiry ms>:<serialized value>``.

The version is stamped by the write script, in the same atomic step that
reads it; compute time and expiry are what XFetch needs to refresh an entry
early, at random, before it expires."""

from __future__ import annotations

import math
import random
import time
from typing import Any

from .serializers import Serializer

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


def decode(serializer: Serializer, raw: bytes | None, version: bytes) -> Entry | None:
    """The entry held in ``raw``, or None if there is none, it belongs to
    another namespace version, or it is not an entry at all (written by
    something else than the cache)."""
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
    return Entry(serializer.loads(payload), compute_ms, expires_ms)
