"""The near cache: hits served from process memory, kept correct by the
server's invalidations.

Entries read from Redis are kept here, with the namespace version they
were read with, in an LRU bounded in entries and in bytes. A read that finds
its namespace's version and an entry of that version here, not expired, is
served without a round trip. Everything else (a miss, a write, an
invalidation) goes to Redis as without the near cache.

Correctness comes from key tracking (:meth:`PluginContext.track_keys`): every
change to a cache key, by any client of the server, removes the local copy
when its invalidation arrives, and a copy is served only while the
tracking has proven, within ``max_stale`` seconds, that every invalidation
sent before has arrived. The races of a two-connection design are closed:

- A read registers itself before it is sent (a *pending* mark); an
  invalidation or a flush removes the mark, and a reply whose mark is gone
  is not kept: it may predate the change.
- This process's own writes, deletions and invalidations remove the local
  copies as soon as they return, before their invalidation comes back.
- Everything is dropped when the tracking may have missed something (see
  :mod:`flask_core_redis.connection.tracking`), and in a forked child.

A hit gives a value the caller may change: an immutable one (str, int,
float, bool, None, bytes) is shared, any other is deserialized again from
the bytes kept."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ...plugin_api import PluginContext
from .entries import MISS, Codec, Entry, fields

logger = logging.getLogger("flask_core_redis")

#: What one held item costs beyond its key's and its value's objects (the
#: dict slot, the record, its times), as the benchmark measures it with
#: tracemalloc on CPython 3.11.
ITEM_OVERHEAD_BYTES = 260

#: Values handed out as they are: they cannot be changed by the caller.
SHARED_TYPES = frozenset({str, int, float, bool, type(None), bytes})


class Pending:
    """A read in flight: its reply is kept only if this mark is still there."""

    __slots__ = ()


class Held:
    """One entry held locally: its version, its times, and its value (as it
    is for a :data:`SHARED_TYPES` value, else serialized)."""

    __slots__ = ("compute_ms", "expires_ms", "payload", "shared", "size", "version")

    def __init__(self, key: str, raw_fields: list[bytes], value: Any) -> None:
        self.version, compute, expires, payload = raw_fields
        self.compute_ms, self.expires_ms = float(compute), float(expires)
        shared = type(value) in SHARED_TYPES
        self.shared = value if shared else MISS
        self.payload = b"" if shared else payload
        self.size = _size(key, value if shared else payload)


def _size(key: str, item: Any) -> int:
    """What holding ``item`` under ``key`` costs, as the byte bound counts it."""
    if isinstance(item, Held):
        return item.size
    value = 0 if isinstance(item, Pending) else sys.getsizeof(item)
    return ITEM_OVERHEAD_BYTES + sys.getsizeof(key) + value


class LocalEntries:
    """Held entries, namespace versions (bytes) and pending marks by key
    name, least recently used first, bounded in count and in bytes.
    Thread-safe."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.reset()

    def reset(self) -> None:
        """Empty, with a new lock (in a forked child, the old one may be held
        by a thread that is not there)."""
        self._items: OrderedDict[str, Any] = OrderedDict()
        self.bytes = 0
        #: Entries dropped to stay within the bounds, since start.
        self.evictions = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def pair(self, version_key: str, entry_key: str) -> tuple[Any, Any]:
        """What is held under both names (None where nothing is), each
        marked as just used."""
        items = self._items
        with self._lock:
            version, item = items.get(version_key), items.get(entry_key)
            if item is not None:
                items.move_to_end(entry_key)
                if version is not None:
                    items.move_to_end(version_key)
        return version, item

    def begin(self, version_key: str, entry_keys: Iterable[str]) -> list[Pending | None]:
        """A pending mark under each name (the one there, if a read of it is
        already in flight); none for a version already held, which stays
        served (the read's version may be newer: its entries then do not
        match it, and are not served until the version's invalidation)."""
        with self._lock:
            held = self._items.get(version_key)
            marks = [None if isinstance(held, bytes) else self._mark(version_key)]
            marks.extend(self._mark(key) for key in entry_keys)
            self._evict()
        return marks

    def _mark(self, key: str) -> Pending:
        item = self._items.get(key)
        if not isinstance(item, Pending):
            item = Pending()
            self._put(key, item)
        return item

    def fill(self, key: str, mark: Pending | None, item: Any) -> None:
        """Hold ``item`` under ``key`` if ``mark`` is still there."""
        if mark is None:
            return
        with self._lock:
            if self._items.get(key) is mark:
                self._put(key, item)
                self._evict()

    def discard(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                item = self._items.pop(key, None)
                if item is not None:
                    self.bytes -= _size(key, item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def _put(self, key: str, item: Any) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= _size(key, old)
        self._items[key] = item
        self.bytes += _size(key, item)

    def _evict(self) -> None:
        items = self._items
        while items and (len(items) > self.max_entries or self.bytes > self.max_bytes):
            key, item = items.popitem(last=False)
            self.bytes -= _size(key, item)
            self.evictions += 1


class NearCache:
    """One app's near cache: the local entries of the namespaces it covers
    (None: all), and the key tracking that keeps them correct, started on
    first use (see the module's docstring)."""

    def __init__(self, context: PluginContext, codec: Codec, *, max_entries: int,
                 max_bytes: int, max_stale_ms: int, namespaces: frozenset[str] | None) -> None:
        self._context = context
        self._codec = codec
        self._namespaces = namespaces
        self.max_stale = max_stale_ms / 1000
        self.entries = LocalEntries(max_entries, max_bytes)
        #: Every cache key starts with it (the namespace tags' common start).
        self.prefix = context.slot_tag("cache")[:-1] + ":"
        self._tracking: Any = None
        self._starting = threading.Lock()
        self.hits = self.flushes = 0
        _LIVE.add(self)

    @property
    def evictions(self) -> int:
        """Entries dropped to stay within the bounds, since start."""
        return self.entries.evictions

    def covers(self, namespace: str) -> bool:
        return self._namespaces is None or namespace in self._namespaces

    # The sink of the tracking (its thread) ---------------------------------

    def invalidated(self, keys: list[str]) -> None:
        self.entries.discard(keys)

    def flushed(self) -> None:
        self.entries.clear()
        self.flushes += 1

    # Reads ----------------------------------------------------------------

    def proven(self) -> bool:
        """Whether local copies may be served and kept now: every change
        made more than ``max_stale`` ago is known to have been heard."""
        tracking = self._tracking
        if tracking is None or not tracking.running:
            self._start()
            return False
        return bool(time.monotonic() - tracking.proven_at <= self.max_stale)

    def value(self, version_key: str, entry_key: str) -> Any:
        """The value held for ``entry_key``, or :data:`MISS`."""
        held = self._held(version_key, entry_key)
        if held is None:
            return MISS
        self.hits += 1
        return held.shared if held.shared is not MISS else self._codec.loads(held.payload)

    def entry(self, version_key: str, entry_key: str) -> Entry | None:
        """:meth:`value` with the times ``get_or_set``'s early refresh needs."""
        held = self._held(version_key, entry_key)
        if held is None:
            return None
        value = held.shared if held.shared is not MISS else self._codec.loads(held.payload)
        if value is MISS:
            return None
        self.hits += 1
        return Entry(value, held.compute_ms, held.expires_ms)

    def _held(self, version_key: str, entry_key: str) -> Held | None:
        if not self.proven():
            return None
        version, held = self.entries.pair(version_key, entry_key)
        if (type(held) is not Held or held.version != version
                or held.expires_ms <= time.time() * 1000):
            return None
        return held

    def begin(self, version_key: str, entry_keys: list[str]) -> list[Pending | None] | None:
        """Pending marks for a read of ``version_key`` and ``entry_keys``, to
        give back to :meth:`keep` with its reply; None: keep nothing."""
        if not self.proven():
            return None
        return self.entries.begin(version_key, entry_keys)

    def keep(self, marks: list[Pending | None] | None, version_key: str, version: bytes,
             entry_keys: list[str], raws: list[bytes | None], values: list[Any]) -> None:
        """Hold what a read begun with :meth:`begin` found: the namespace's
        version, and each entry of that version whose value was readable."""
        if marks is None:
            return
        tracking = self._tracking
        if tracking is None:  # closed meanwhile
            return
        version_mark, *entry_marks = marks
        if tracking.heard_as(version_key) == version_key:
            self.entries.fill(version_key, version_mark, version)
        for key, mark, raw, value in zip(entry_keys, entry_marks, raws, values, strict=True):
            raw_fields = fields(raw, version)
            # A name the client's encoding changes would never be invalidated.
            if raw_fields is not None and value is not MISS and tracking.heard_as(key) == key:
                self.entries.fill(key, mark, Held(key, raw_fields, value))

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the local copies of keys this process just wrote."""
        self.entries.discard(keys)

    # Life -------------------------------------------------------------------

    def _start(self) -> None:
        with self._starting:
            tracking = self._tracking
            if tracking is None or not tracking.running:
                self.entries.clear()
                self._tracking = self._context.track_keys(self.prefix, self, self.max_stale)

    def close(self) -> None:
        """Stop the tracking and drop every local copy (the next read starts
        it again)."""
        with self._starting:
            tracking, self._tracking = self._tracking, None
        if tracking is not None:
            tracking.close()
        self.entries.clear()

    def stats(self) -> dict[str, Any]:
        """What the health report shows of it."""
        tracking = self._tracking
        proven_ms = (None if tracking is None or tracking.proven_at == float("-inf")
                     else round((time.monotonic() - tracking.proven_at) * 1000))
        return {"entries": len(self.entries), "bytes": self.entries.bytes,
                "max_stale_ms": round(self.max_stale * 1000),
                "proven_ms_ago": proven_ms, "hits": self.hits, "flushes": self.flushes}

    def _after_fork(self) -> None:
        # The parent's copies were proven by the parent's tracking, not this
        # process's; the locks may have been held by threads it does not have.
        self.entries.reset()
        self._starting = threading.Lock()
        self._tracking = None


_LIVE: weakref.WeakSet[NearCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for near in list(_LIVE):
        near._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
