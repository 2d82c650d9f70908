"""The cache store: get, set, get_or_set with stampede protection, namespaces,
fail-open reads.

An entry of an older namespace version is a miss, so invalidating a namespace
is one INCR and the old entries expire by their TTL (see :mod:`.entries`;
key names and scripts are in :mod:`.scripts`). Every read fetches the version
from Redis in the same command as the entries (an MGET, or a script): no
process keeps a copy of it, so once ``invalidate_namespace`` returns no read
sees an entry written before.

Each call is one operation (:mod:`flask_core_redis.plugin_api.operations`),
written once: the sync method runs it with the blocking client, its async
form (``aget``, ``aset`` ...) with the asyncio one, so both give the same
guarantees and share the breaker.

A hit is the cache's hot path: ``get`` is one MGET, builds no
:class:`~.entries.Entry`, and parses no times (only ``get_or_set``'s XFetch
needs them); key names are formatted once per namespace. With the near
cache on (``CACHE_LOCAL_ENTRIES``), a hit held locally makes no round trip
at all (:mod:`.near`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import click
from flask import Flask

from ...plugin_api import (
    MAX_TTL_SECONDS,
    Command,
    Key,
    Operation,
    PluginContext,
    arun,
    hookimpl,
    parsers,
    run,
    ttl_ms,
)
from .decorator import DEFAULT_NAMESPACE, CacheOfCurrentApp, Decorator, KeySpec, cached_through
from .entries import MISS, Codec
from .guard import Guard
from .near import ITEM_OVERHEAD_BYTES, NearCache
from .recompute import Recompute
from .scripts import SET_MANY, NamespaceKeys, mget, run_script
from .serializers import JsonSerializer, Serializer
from .telemetry import CacheTelemetry

T = TypeVar("T")

logger = logging.getLogger("flask_core_redis")



class ClientOnUse:
    """The client ``resolve()`` gives, asked for at each command, so inside
    the guard: building a Cluster client connects, and a Cluster down then
    fails open as any command does. Its commands are the client's own, a
    coroutine's for an asyncio one."""

    __slots__ = ("_resolve",)

    def __init__(self, resolve: Callable[[], Any]) -> None:
        self._resolve = resolve

    @property
    def execute_command(self) -> Callable[..., Any]:
        # A property, not a method: the hot path hands the arguments on once.
        return self._resolve().execute_command  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

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
    Key("CACHE_LOCAL_ENTRIES", 0, parsers.integer(0, 100_000_000), "Cache: the most "
        "entries the near cache holds in each process's memory, served without a round "
        "trip and kept correct by the server's invalidations; 0 turns it off."),
    Key("CACHE_LOCAL_BYTES", 64 * 1024 * 1024, parsers.integer(1024), "Cache: the most "
        "bytes the near cache holds in each process (the key and value objects, plus "
        f"{ITEM_OVERHEAD_BYTES} per entry); the least recently used go first."),
    Key("CACHE_LOCAL_MAX_STALE", 1000, parsers.integer(10, 60_000), "Cache: milliseconds. "
        "The near cache serves a local copy only while it has proven this recently that "
        "every invalidation sent before has reached it: another process's change is "
        "seen at most this late."),
    Key("CACHE_LOCAL_NAMESPACES", (), parsers.names, "Cache: the namespaces the near "
        "cache holds (a list, or names separated by commas); empty: every namespace."),
    Key("CACHE_OTEL_NAMESPACES", (), parsers.names, "Cache: with `OTEL` on, the "
        "namespaces named in the cache's metrics and spans (a list, or names separated by "
        "commas); `default` always is, every other is recorded as `other`."),
)


class CachePlugin:
    """``ext.cache``: get, set, get_or_set and ``@cached``, in namespaces, each
    with an async form (``aget``, ``aset`` ...)."""

    #: This app's plugin context, set by :meth:`core_redis_setup`.
    context: PluginContext

    @hookimpl
    def core_redis_setup(self, app: Flask, context: PluginContext) -> None:
        """Read the ``CACHE_*`` keys."""
        self.context = context
        (self.default_ttl, self.fail_open, self.breaker_seconds, self.lock_timeout,
         local_entries, local_bytes, max_stale_ms, local_namespaces, otel_namespaces) = (
            context.setting(key) for key in CONFIG_KEYS)
        self._serializer: Serializer | None = None
        self._namespaces: dict[str, NamespaceKeys] = {}
        self._telemetry = CacheTelemetry(context, otel_namespaces)
        self._spans = self._telemetry.spans
        self._guard = Guard(self.fail_open, self.breaker_seconds,
                            fell_open=self._telemetry.fail_open.add)
        # Every command, the lock renewals' included, on a client whose reads
        # are bounded: on a hung server a warm connection of the shared client,
        # with no SOCKET_TIMEOUT, would wait for ever, and fail-open never happen.
        self._client = ClientOnUse(context.fail_fast_client)
        self._aclient = ClientOnUse(context.fail_fast_async_client)
        self._codec = Codec(self.serializer)
        self._recompute = Recompute(self._guard, self._codec, self.lock_timeout,
                                    self._telemetry)
        #: The near cache, or None when it is off.
        self.near: NearCache | None = None
        if local_entries and context.mode == "memory":
            logger.warning("cache: %s_CACHE_LOCAL_ENTRIES is set, but the embedded server "
                           "(memory://) has no CLIENT TRACKING: the near cache is off",
                           context.config_prefix)
        elif local_entries:
            self.near = NearCache(context, self._codec, max_entries=local_entries,
                                  max_bytes=local_bytes, max_stale_ms=max_stale_ms,
                                  namespaces=frozenset(local_namespaces) or None)
            self._telemetry.watch_near_cache(context, self.near)

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

    def _resolve_ttl(self, ttl: float | None) -> int:
        return ttl_ms(self.default_ttl if ttl is None else ttl)

    def _near_of(self, namespace: str) -> NearCache | None:
        near = self.near
        return near if near is not None and near.covers(namespace) else None

    def _local(self, key: str, namespace: str) -> Any:
        """The value the near cache holds for ``key``, or :data:`MISS`."""
        near = self.near
        if near is None or not near.covers(namespace):
            return MISS
        names = self._keys(namespace)
        return near.value(names.version, names.entry(key))

    # Operations: each call's logic, once ----------------------------------

    def _get(self, key: str, default: Any, namespace: str) -> Operation[Any]:
        """``get`` once the near cache did not hold ``key``."""
        found = yield from self._fetch([key], namespace)
        return found.get(key, default)

    def _get_many(self, keys: Iterable[str], namespace: str) -> Operation[dict[str, Any]]:
        """The hits among ``keys``: those held by the near cache, then the
        others in one MGET (with their namespace's version)."""
        found: dict[str, Any] = {}
        wanted: list[str] = []
        for key in keys:
            value = self._local(key, namespace)
            if value is MISS:
                wanted.append(key)
            else:
                found[key] = value
        if wanted:  # else nothing to ask Redis: no probe, no breaker news
            found.update((yield from self._fetch(wanted, namespace)))
        return found

    def _fetch(self, wanted: list[str], namespace: str) -> Operation[dict[str, Any]]:
        """The hits among ``wanted``, read from Redis in one MGET."""
        names = self._keys(namespace)
        read = self._read_many(wanted, names.version, list(map(names.entry, wanted)),
                               self._near_of(namespace))
        found = yield from self._guard.guarded(read, None)
        if found is None:  # answered without Redis
            return {}
        if self._telemetry.on:  # off: not even a call on the hot path
            self._count_reads(len(wanted), len(found), namespace)
        return found

    def _count_reads(self, wanted: int, hits: int, namespace: str) -> None:
        """Record a read of ``wanted`` keys from Redis that found ``hits``."""
        self._telemetry.requests.add(hits, result="hit", namespace=namespace)
        self._telemetry.requests.add(wanted - hits, result="miss", namespace=namespace)
        self._spans["get"].note(result="hit" if hits else "miss")

    def _read_many(self, wanted: list[str], version_key: str, entry_keys: list[str],
                   near: NearCache | None) -> Operation[dict[str, Any]]:
        marks = None if near is None else near.begin(version_key, entry_keys)
        version, *raws = yield mget(version_key, *entry_keys)
        version = version or b"0"
        values = [self._codec.value(raw, version) for raw in raws]
        if marks is not None:
            near.keep(marks, version_key, version, entry_keys, raws, values)  # type: ignore[union-attr]
        return {key: value for key, value in zip(wanted, values, strict=True)
                if value is not MISS}

    def _set_many(self, mapping: Mapping[str, Any], ttl: float | None,
                  namespace: str) -> Operation[None]:
        ttl_ms = self._resolve_ttl(ttl)
        if not mapping:
            return
        bodies = [self._codec.encode(value, ttl_ms, 0) for value in mapping.values()]
        keys = self._keys(namespace)
        entry_keys = list(map(keys.entry, mapping))
        with self._forgetting(namespace, entry_keys):
            yield from self._guard.guarded(
                run_script(SET_MANY, [keys.version, *entry_keys], [ttl_ms, *bodies]), None)

    def _delete(self, key: str, namespace: str) -> Operation[bool]:
        name = self._keys(namespace).entry(key)
        self._telemetry.invalidations.add(1, scope="key", namespace=namespace)
        with self._forgetting(namespace, [name]):
            return bool((yield from self._guard.raising(_command("DEL", name))))

    def _invalidate_namespace(self, namespace: str) -> Operation[int]:
        key = self._keys(namespace).version
        self._telemetry.invalidations.add(1, scope="namespace", namespace=namespace)
        with self._forgetting(namespace, [key]):
            return int((yield from self._guard.raising(_command("INCR", key))))

    def _get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None,
                    namespace: str) -> Operation[T]:
        names = self._keys(namespace).names(key)
        near = self._near_of(namespace)
        if near is not None:
            entry = near.entry(names.version, names.entry)
            if entry is not None and not entry.due(time.time() * 1000):
                self._spans["get_or_set"].note(result="hit", computed=False)
                return entry.value  # type: ignore[no-any-return]
        return (yield from self._recompute.get_or_set(names, compute, self._resolve_ttl(ttl),
                                                      namespace, near))

    @contextlib.contextmanager
    def _forgetting(self, namespace: str, names: list[str]) -> Iterator[None]:
        """This process's local copies of ``names`` dropped once the write in
        the block returns or fails (it may have happened): its next read
        sees its own write without waiting for the invalidation."""
        try:
            yield
        finally:
            near = self._near_of(namespace)
            if near is not None:
                near.forget(names)

    def _run(self, operation: Operation[T], span: str) -> T:
        """``operation`` in the span ``cache.<span>``, with the blocking client."""
        return run(self._spans[span].traced(operation), self._client)

    async def _arun(self, operation: Operation[T], span: str) -> T:
        """``operation`` in the span ``cache.<span>``, with the asyncio client."""
        return await arun(self._spans[span].traced(operation), self._aclient)

    # Public API ------------------------------------------------------------

    def get(self, key: str, default: Any = None, *, namespace: str = DEFAULT_NAMESPACE) -> Any:
        """The cached value, or ``default`` on a miss: one MGET of the entry and
        of its namespace's version."""
        value = self._local(key, namespace)  # the near cache's hit: no operation to run
        return value if value is not MISS else self._run(self._get(key, default, namespace),
                                                         "get")

    async def aget(self, key: str, default: Any = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> Any:
        """:meth:`get` from async code."""
        value = self._local(key, namespace)
        return value if value is not MISS else await self._arun(
            self._get(key, default, namespace), "get")

    def get_many(self, keys: Iterable[str], *,
                 namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """The hits among ``keys``, in one round trip."""
        return self._run(self._get_many(keys, namespace), "get_many")

    async def aget_many(self, keys: Iterable[str], *,
                        namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """:meth:`get_many` from async code."""
        return await self._arun(self._get_many(keys, namespace), "get_many")

    def set(self, key: str, value: Any, ttl: float | None = None, *,
            namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache ``value`` (JSON-serializable) for ``ttl`` seconds."""
        self._run(self._set_many({key: value}, ttl, namespace), "set")

    async def aset(self, key: str, value: Any, ttl: float | None = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> None:
        """:meth:`set` from async code."""
        await self._arun(self._set_many({key: value}, ttl, namespace), "set")

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache every item of ``mapping`` for ``ttl`` seconds, in one round trip."""
        self._run(self._set_many(mapping, ttl, namespace), "set")

    async def aset_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *,
                        namespace: str = DEFAULT_NAMESPACE) -> None:
        """:meth:`set_many` from async code."""
        await self._arun(self._set_many(mapping, ttl, namespace), "set")

    def delete(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Remove one entry; True if it was there. With Redis down, the
        error is raised: a deletion never fails open."""
        return self._run(self._delete(key, namespace), "delete")

    async def adelete(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """:meth:`delete` from async code."""
        return await self._arun(self._delete(key, namespace), "delete")

    def invalidate_namespace(self, namespace: str) -> int:
        """Drop every entry of ``namespace`` at once (O(1)); the new version.
        With Redis down, the error is raised: an invalidation never fails open."""
        return self._run(self._invalidate_namespace(namespace), "invalidate_namespace")

    async def ainvalidate_namespace(self, namespace: str) -> int:
        """:meth:`invalidate_namespace` from async code."""
        return await self._arun(self._invalidate_namespace(namespace), "invalidate_namespace")

    def get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> T:
        """The cached value, or ``compute()``'s, cached. On a miss one caller,
        across all processes, computes while the others wait for its result; near
        expiry one caller refreshes early while the others keep the old value."""
        return self._run(self._get_or_set(key, compute, ttl, namespace), "get_or_set")

    async def aget_or_set(self, key: str, compute: Callable[[], T | Awaitable[T]],
                          ttl: float | None = None, *,
                          namespace: str = DEFAULT_NAMESPACE) -> T:
        """:meth:`get_or_set` from async code; ``compute`` may be a coroutine
        function. Sync and async callers of one key share one computation."""
        return await self._arun(
            self._get_or_set(key, compute, ttl, namespace),  # type: ignore[arg-type]
            "get_or_set")

    def cached(self, ttl: float | None = None, key: KeySpec = None, *,
               namespace: str = DEFAULT_NAMESPACE) -> Decorator[T]:
        """Decorate a function or view to cache its (JSON-serializable) result.
        ``key`` is a format string over the arguments (``"user:{user_id}"``), a
        callable taking the same arguments, or None for the function's name and
        a hash of its arguments. An ``async def`` function gets an async
        wrapper, which uses :meth:`aget_or_set`."""
        return cached_through(lambda: self, ttl, key, namespace)

    @classmethod
    def outside_app_context(cls, resolve: Callable[[], CachePlugin]) -> CacheOfCurrentApp:
        """What ``ext.cache`` is outside an app context, so that ``@ext.cache.cached()``
        works at import time."""
        return CacheOfCurrentApp(resolve)

    @hookimpl
    def core_redis_closing(self, context: PluginContext) -> None:
        """Stop the near cache's tracking and drop its copies (the next read
        starts it again)."""
        if self.near is not None:
            self.near.close()

    @hookimpl
    def core_redis_health(self, context: PluginContext) -> dict[str, Any] | None:
        """With the near cache on, its figures under ``near_cache``: entries
        and bytes held, the bound, how long ago delivery was last proven
        (None: not proven), local hits and flushes since start."""
        return None if self.near is None else {"near_cache": self.near.stats()}

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


def _command(*args: Any) -> Operation[Any]:
    return (yield Command(*args))
