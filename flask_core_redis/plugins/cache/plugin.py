"""The cache store: get, set, get_or_set with stampede protection, namespaces,
fail-open reads.

An entry of an older namespace version is a miss, so invalidating a namespace
is one INCR and the old entries expire by their TTL (see :mod:`.entries`;
key names and scripts are in :mod:`.scripts`). Every read fetches the version
from Redis in the same command as the entries (an MGET, or a script): no
process keeps a copy of it, so once ``invalidate_namespace`` returns no read
sees an entry written before.

A hit is the cache's hot path: ``get`` builds no closure, no list and no
:class:`~.entries.Entry`, and parses no times (only ``get_or_set``'s XFetch
needs them); key names are formatted once per namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click
from flask import Flask

from ...plugin_api import MAX_TTL_SECONDS, Key, PluginContext, hookimpl, parsers, ttl_ms
from .decorator import DEFAULT_NAMESPACE, CacheOfCurrentApp, Decorator, KeySpec, cached_through
from .entries import MISS, Codec
from .guard import Guard
from .recompute import Recompute
from .scripts import SET_MANY, NamespaceKeys, read_entry, read_raw, run_raw
from .serializers import JsonSerializer, Serializer

T = TypeVar("T")

#: What a read Redis did not answer (failed open) gives: no version, no entry.
NOTHING_READ: Sequence[bytes | None] = (None, None)

#: The plugin's configuration keys (``REDIS_CACHE_DEFAULT_TTL``...).
CONFIG_KEYS = (
    Key("CACHE_DEFAULT_TTL", 3600, parsers.integer(1, MAX_TTL_SECONDS), "Cache: seconds "
        "an entry lives unless `ttl=` says otherwise."),
    Key("CACHE_FAIL_OPEN", True, parsers.boolean, "Cache: with Redis down, reads miss and "
        "writes are skipped (one WARNING per outage); false raises instead. Deletions and "
        "invalidations raise either way."),
    Key("CACHE_BREAKER_SECONDS", 5, parsers.number(0, 3600, "expected a number of seconds "
        "above 0 and at most 3600"), "Cache: with `CACHE_FAIL_OPEN`, seconds Redis is "
        "skipped after a connection error or timeout before one call tries it again, so "
        "an outage costs one failed call per interval, not one per call."),
    Key("CACHE_LOCK_TIMEOUT", 10, parsers.integer(1, MAX_TTL_SECONDS), "Cache: seconds "
        "a recompute lock lives unless renewed; the caller computing renews it, so the "
        "others wait as long as it computes, and take over this long after it dies."),
)


class CachePlugin:
    """``ext.cache``: get, set, get_or_set and ``@cached``, in namespaces."""

    #: This app's plugin context, set by :meth:`core_redis_setup`.
    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        """Read the ``CACHE_*`` keys."""
        self.context = context
        self.default_ttl, self.fail_open, self.breaker_seconds, self.lock_timeout = (
            context.setting(key) for key in CONFIG_KEYS)
        self._serializer: Serializer | None = None
        self._namespaces: dict[str, NamespaceKeys] = {}
        self._guard = Guard(self.fail_open, self.breaker_seconds)
        # Every command, the lock keeper's included, on a client whose reads are
        # bounded: on a hung server a warm connection of the shared client, with
        # no SOCKET_TIMEOUT, would wait for ever, and fail-open never happen.
        self._client = context.fail_fast_client
        self._codec = Codec(self.serializer)
        self._recompute = Recompute(self._client, self._guard, self._codec, self.lock_timeout)

    def serializer(self) -> Serializer:
        """The first serializer a plugin supplies, else JSON. (A method, not a
        property: pluggy reads every attribute of a plugin when registering it.)"""
        if self._serializer is None:
            self._serializer = self.context.serializer() or JsonSerializer()
        return self._serializer

    def _keys(self, namespace: str) -> NamespaceKeys:
        keys = self._namespaces.get(namespace)
        if keys is None:
            if not namespace or not isinstance(namespace, str):
                raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
            tag = self.context.slot_tag("cache", namespace)
            keys = self._namespaces[namespace] = NamespaceKeys(tag)
        return keys

    # Entries -------------------------------------------------------------

    def _read_entry(self, version_key: str, entry_key: str) -> Sequence[bytes | None]:
        return read_entry(self._client(), version_key, entry_key)

    def _read_entries(self, names: list[str]) -> list[bytes | None]:
        return read_raw(self._client(), names)

    def _write(self, entries: Mapping[str, bytes], ttl_ms: int, namespace: str) -> None:
        keys = self._keys(namespace)
        names = [keys.version, *map(keys.entry, entries)]
        self._guard.run(lambda: run_raw(self._client(), SET_MANY, names,
                                        [ttl_ms, *entries.values()]), None)

    def _resolve_ttl(self, ttl: float | None) -> int:
        return ttl_ms(self.default_ttl if ttl is None else ttl)

    # Public API ------------------------------------------------------------

    def get(self, key: str, default: Any = None, *, namespace: str = DEFAULT_NAMESPACE) -> Any:
        """The cached value, or ``default`` on a miss: one MGET of the entry and
        of its namespace's version."""
        keys = self._keys(namespace)
        version, raw = self._guard.run(self._read_entry, NOTHING_READ, keys.version,
                                       keys.entry(key))
        value = self._codec.value(raw, version or b"0")
        return default if value is MISS else value

    def get_many(self, keys: Iterable[str], *,
                 namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """The hits among ``keys``, in one round trip."""
        wanted = list(keys)
        if not wanted:
            return {}
        namespace_keys = self._keys(namespace)
        names = [namespace_keys.version, *map(namespace_keys.entry, wanted)]
        nothing_read: list[bytes | None] = [None] * len(names)
        version, *raws = self._guard.run(self._read_entries, nothing_read, names)
        values = (self._codec.value(raw, version or b"0") for raw in raws)
        return {key: value for key, value in zip(wanted, values, strict=True)
                if value is not MISS}

    def set(self, key: str, value: Any, ttl: float | None = None, *,
            namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache ``value`` (JSON-serializable) for ``ttl`` seconds."""
        self.set_many({key: value}, ttl, namespace=namespace)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache every item of ``mapping`` for ``ttl`` seconds, in one round trip."""
        ttl_ms = self._resolve_ttl(ttl)
        if mapping:
            self._write({key: self._codec.encode(value, ttl_ms, 0)
                         for key, value in mapping.items()}, ttl_ms, namespace)

    def delete(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Remove one entry; True if it was there. With Redis down, the
        error is raised: a deletion never fails open."""
        name = self._keys(namespace).entry(key)
        return bool(self._guard.run_or_raise(lambda: self._client().delete(name)))

    def invalidate_namespace(self, namespace: str) -> int:
        """Drop every entry of ``namespace`` at once (O(1)); the new version.
        With Redis down, the error is raised: an invalidation never fails open."""
        key = self._keys(namespace).version
        version: Any = self._guard.run_or_raise(lambda: self._client().incr(key))
        return int(version)

    def get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> T:
        """The cached value, or ``compute()``'s, cached. On a miss one caller,
        across all processes, computes while the others wait for its result; near
        expiry one caller refreshes early while the others keep the old value."""
        names = self._keys(namespace).names(key)
        return self._recompute.get_or_set(names, compute, self._resolve_ttl(ttl))

    def cached(self, ttl: float | None = None, key: KeySpec = None, *,
               namespace: str = DEFAULT_NAMESPACE) -> Decorator[T]:
        """Decorate a function or view to cache its (JSON-serializable) result.
        ``key`` is a format string over the arguments (``"user:{user_id}"``), a
        callable taking the same arguments, or None for the function's name and
        a hash of its arguments."""
        return cached_through(lambda: self, ttl, key, namespace)

    @classmethod
    def outside_app_context(cls, resolve: Callable[[], CachePlugin]) -> CacheOfCurrentApp:
        """What ``ext.cache`` is outside an app context, so that ``@ext.cache.cached()``
        works at import time."""
        return CacheOfCurrentApp(resolve)

    @hookimpl
    def core_redis_commands(self, context: PluginContext, group: click.Group) -> None:
        """``flask redis cache clear NAMESPACE``."""

        @group.group("cache")
        def cache() -> None:
            """The cache plugin."""

        @cache.command("clear")
        @click.argument("namespace")
        def clear(namespace: str) -> None:
            """Invalidate every entry of NAMESPACE (O(1))."""
            version = self.invalidate_namespace(namespace)
            click.echo(f"namespace {namespace!r} invalidated (now version {version})")
