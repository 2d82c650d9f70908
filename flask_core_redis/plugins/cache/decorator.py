"""``@ext.cache.cached()``: cache a function's result under a key made from its
arguments. Usable at import time: outside an app context ``ext.cache`` is a
:class:`CacheOfCurrentApp`, which finds the app's cache at each call."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from .keys import ENCODED_TYPES, NotCanonical, canonical

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"

KeySpec = str | Callable[..., str] | None
Decorator = Callable[[Callable[..., T]], Callable[..., T]]


class GetOrSet(Protocol):
    """What the decorator needs of the cache."""

    def get_or_set(self, key: str, compute: Callable[[], T], ttl: float | None = None, *,
                   namespace: str = ...) -> T: ...

    async def aget_or_set(self, key: str, compute: Callable[[], Awaitable[T]],
                          ttl: float | None = None, *, namespace: str = ...) -> T: ...


def cached_through(cache: Callable[[], GetOrSet], ttl: float | None, key: KeySpec,
                   namespace: str) -> Decorator[T]:
    """The ``cached`` decorator, asking ``cache()`` for the cache at each call:
    decorated at import time, a function uses the cache of the app it runs in.

    ``key`` is a format string over the arguments (``"user:{user_id}"``), a
    callable taking the same arguments, or None for the function's name and a
    hash of the arguments' canonical encoding (see :mod:`.keys`).

    An ``async def`` function gets an ``async def`` wrapper, which awaits
    ``aget_or_set``: the coroutine is awaited, its result cached."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Callable[[], Any]]:
            return _cache_key(func, signature, key, args, kwargs), lambda: func(*args, **kwargs)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await cache().aget_or_set(*call(args, kwargs), ttl, namespace=namespace)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return cache().get_or_set(*call(args, kwargs), ttl, namespace=namespace)

        return wrapper

    return decorate


class CacheOfCurrentApp:
    """What ``ext.cache`` is outside an app context: ``cached`` works (for
    decorating at import time); everything else needs an app context."""

    def __init__(self, resolve: Callable[[], GetOrSet]) -> None:
        self._resolve = resolve

    def cached(self, ttl: float | None = None, key: KeySpec = None, *,
               namespace: str = DEFAULT_NAMESPACE) -> Decorator[T]:
        return cached_through(self._resolve, ttl, key, namespace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)


def _cache_key(func: Callable[..., Any], signature: inspect.Signature, key: KeySpec,
               args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if callable(key):
        return key(*args, **kwargs)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    if key is not None:
        return key.format(**bound.arguments)
    return default_key(func, bound.arguments)


def default_key(func: Callable[..., Any], arguments: dict[str, Any]) -> str:
    """``module.qualname:<hash of the arguments' canonical encoding>``; a
    TypeError naming the argument that has no canonical encoding."""
    parts = []
    for name, value in arguments.items():
        try:
            parts.append(canonical(name) + canonical(value))
        except NotCanonical as error:
            raise TypeError(
                f"@cached {func.__qualname__}: {error.describe(name)}, which has no "
                f"canonical cache key (the default key encodes {ENCODED_TYPES}); pass "
                f'key= to cached(), e.g. key="{func.__name__}:{{{name}.id}}" or a callable '
                "taking the same arguments") from None
    encoded = "".join(parts).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(encoded).hexdigest()[:32]
    return f"{func.__module__}.{func.__qualname__}:{digest}"
