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

A hit is the cache's hot path: ``get`` is one MGET, builds no list and no
:class:`~.entries.Entry`, and parses no times (only ``get_or_set``'s XFetch
needs them); key names are formatted once per namespace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from .recompute import Recompute
from .scripts import SET_MANY, NamespaceKeys, mget, run_script
from .serializers import JsonSerializer, Serializer

T = TypeVar("T")

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
        self.default_ttl, self.fail_open, self.breaker_seconds, self.lock_timeout = (
            context.setting(key) for key in CONFIG_KEYS)
        self._serializer: Serializer | None = None
        self._namespaces: dict[str, NamespaceKeys] = {}
        self._guard = Guard(self.fail_open, self.breaker_seconds)
        # Every command, the lock renewals' included, on a client whose reads
        # are bounded: on a hung server a warm connection of the shared client,
        # with no SOCKET_TIMEOUT, would wait for ever, and fail-open never happen.
        self._client = ClientOnUse(context.fail_fast_client)
        self._aclient = ClientOnUse(context.fail_fast_async_client)
        self._codec = Codec(self.serializer)
        self._recompute = Recompute(self._guard, self._codec, self.lock_timeout)

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

    # Operations: each call's logic, once ----------------------------------

    def _get(self, key: str, default: Any, namespace: str) -> Operation[Any]:
        keys = self._keys(namespace)
        return self._guard.guarded(self._read(keys.version, keys.entry(key), default), default)

    def _read(self, version_key: str, entry_key: str, default: Any) -> Operation[Any]:
        version, raw = yield mget(version_key, entry_key)
        value = self._codec.value(raw, version or b"0")
        return default if value is MISS else value

    def _get_many(self, keys: Iterable[str], namespace: str) -> Operation[dict[str, Any]]:
        wanted = list(keys)
        if not wanted:  # nothing to ask Redis: no probe, no breaker news
            return {}
        names = self._keys(namespace)
        read = self._read_many(wanted, [names.version, *map(names.entry, wanted)])
        return (yield from self._guard.guarded(read, {}))

    def _read_many(self, wanted: list[str], names: list[str]) -> Operation[dict[str, Any]]:
        version, *raws = yield mget(*names)
        values = (self._codec.value(raw, version or b"0") for raw in raws)
        return {key: value for key, value in zip(wanted, values, strict=True)
                if value is not MISS}

    def _set_many(self, mapping: Mapping[str, Any], ttl: float | None,
                  namespace: str) -> Operation[None]:
        ttl_ms = self._resolve_ttl(ttl)
        if not mapping:
            return
        bodies = [self._codec.encode(value, ttl_ms, 0) for value in mapping.values()]
        keys = self._keys(namespace)
        names = [keys.version, *map(keys.entry, mapping)]
        yield from self._guard.guarded(run_script(SET_MANY, names, [ttl_ms, *bodies]), None)

    def _delete(self, key: str, namespace: str) -> Operation[bool]:
        name = self._keys(namespace).entry(key)
        return bool((yield from self._guard.raising(_command("DEL", name))))

    def _invalidate_namespace(self, namespace: str) -> Operation[int]:
        key = self._keys(namespace).version
        return int((yield from self._guard.raising(_command("INCR", key))))

    def _get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None,
                    namespace: str) -> Operation[T]:
        names = self._keys(namespace).names(key)
        return self._recompute.get_or_set(names, compute, self._resolve_ttl(ttl))

    # Public API ------------------------------------------------------------

    def get(self, key: str, default: Any = None, *, namespace: str = DEFAULT_NAMESPACE) -> Any:
        """The cached value, or ``default`` on a miss: one MGET of the entry and
        of its namespace's version."""
        return run(self._get(key, default, namespace), self._client)

    async def aget(self, key: str, default: Any = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> Any:
        """:meth:`get` from async code."""
        return await arun(self._get(key, default, namespace), self._aclient)

    def get_many(self, keys: Iterable[str], *,
                 namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """The hits among ``keys``, in one round trip."""
        return run(self._get_many(keys, namespace), self._client)

    async def aget_many(self, keys: Iterable[str], *,
                        namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """:meth:`get_many` from async code."""
        return await arun(self._get_many(keys, namespace), self._aclient)

    def set(self, key: str, value: Any, ttl: float | None = None, *,
            namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache ``value`` (JSON-serializable) for ``ttl`` seconds."""
        run(self._set_many({key: value}, ttl, namespace), self._client)

    async def aset(self, key: str, value: Any, ttl: float | None = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> None:
        """:meth:`set` from async code."""
        await arun(self._set_many({key: value}, ttl, namespace), self._aclient)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        """Cache every item of ``mapping`` for ``ttl`` seconds, in one round trip."""
        run(self._set_many(mapping, ttl, namespace), self._client)

    async def aset_many(self, mapping: Mapping[str, Any], ttl: float | None = None, *,
                        namespace: str = DEFAULT_NAMESPACE) -> None:
        """:meth:`set_many` from async code."""
        await arun(self._set_many(mapping, ttl, namespace), self._aclient)

    def delete(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Remove one entry; True if it was there. With Redis down, the
        error is raised: a deletion never fails open."""
        return run(self._delete(key, namespace), self._client)

    async def adelete(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """:meth:`delete` from async code."""
        return await arun(self._delete(key, namespace), self._aclient)

    def invalidate_namespace(self, namespace: str) -> int:
        """Drop every entry of ``namespace`` at once (O(1)); the new version.
        With Redis down, the error is raised: an invalidation never fails open."""
        return run(self._invalidate_namespace(namespace), self._client)

    async def ainvalidate_namespace(self, namespace: str) -> int:
        """:meth:`invalidate_namespace` from async code."""
        return await arun(self._invalidate_namespace(namespace), self._aclient)

    def get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None = None, *,
                   namespace: str = DEFAULT_NAMESPACE) -> T:
        """The cached value, or ``compute()``'s, cached. On a miss one caller,
        across all processes, computes while the others wait for its result; near
        expiry one caller refreshes early while the others keep the old value."""
        return run(self._get_or_set(key, compute, ttl, namespace), self._client)

    async def aget_or_set(self, key: str, compute: Callable[[], T | Awaitable[T]],
                          ttl: float | None = None, *,
                          namespace: str = DEFAULT_NAMESPACE) -> T:
        """:meth:`get_or_set` from async code; ``compute`` may be a coroutine
        function. Sync and async callers of one key share one computation."""
        return await arun(self._get_or_set(key, compute, ttl, namespace),  # type: ignore[arg-type]
                          self._aclient)

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
