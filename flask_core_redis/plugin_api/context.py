"""What a plugin sees of one app's Redis registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ConfigSource, Key, Settings

if TYPE_CHECKING:
    from ..connection import AnyClient, KeyTracking, TrackingSink
    from ..telemetry import Telemetry


class Registration(Protocol):
    """The part of one app registration a plugin context needs: its settings
    and its clients. (The per-app state provides it.)"""

    @property
    def settings(self) -> Settings: ...

    @property
    def telemetry(self) -> Telemetry: ...

    @property
    def client(self) -> AnyClient: ...

    def duplicate(self) -> AnyClient: ...

    def fail_fast_client(self) -> AnyClient: ...

    def async_client(self) -> Any: ...

    def fail_fast_async_client(self) -> Any: ...

    def track_keys(self, prefix: str, sink: TrackingSink, max_stale: float) -> KeyTracking: ...


class PluginContext:
    """A plugin's handle on one app's Redis: the shared client, key names under
    the app's ``KEY_PREFIX``, its own configuration keys, and the settings with
    every secret masked. It never hands out credentials."""

    def __init__(self, registration: Registration, source: ConfigSource, app_name: str,
                 serializer: Callable[[], Any]) -> None:
        self._registration = registration
        self._source = source
        self._serializer = serializer
        self.app_name = app_name
        settings = registration.settings
        self.config_prefix = settings.prefix
        self.mode = settings.mode
        self.key_prefix = settings.key_prefix

    def __repr__(self) -> str:
        return f"<PluginContext {self.app_name} {self.config_prefix} {self.mode}>"

    @property
    def settings(self) -> dict[str, object]:
        """The registration's settings, secrets as ``***``."""
        return self._registration.settings.describe()

    @property
    def client(self) -> AnyClient:
        """The app's shared, pooled client."""
        return self._registration.client

    def duplicate(self) -> AnyClient:
        """A client of its own, for pub/sub and blocking commands."""
        return self._registration.duplicate()

    def fail_fast_client(self) -> AnyClient:
        """A pooled client for short commands that must fail fast on a hung
        server: every read waits at most ``SOCKET_TIMEOUT``, or
        ``CONNECT_TIMEOUT`` when that is unset (then it is a pool of its own;
        else the shared client)."""
        return self._registration.fail_fast_client()

    @property
    def async_client(self) -> Any:
        """The app's shared asyncio client (``redis.asyncio.Redis``, or
        ``RedisCluster`` on Cluster) for the running event loop: pooled,
        with the same settings, retries and events as :attr:`client`.
        Drive an operation with it: ``await arun(op, context.async_client)``."""
        return self._registration.async_client()

    def fail_fast_async_client(self) -> Any:
        """:meth:`fail_fast_client`'s asyncio counterpart, for the running
        event loop."""
        return self._registration.fail_fast_async_client()

    def track_keys(self, prefix: str, sink: TrackingSink, max_stale: float) -> KeyTracking:
        """Hear of every change to the keys under ``prefix`` (a full key name's
        start, e.g. ``context.slot_tag("cache")`` without its closing brace),
        by any client, on every master: ``sink.invalidated(keys)`` and
        ``sink.flushed()`` are called from a thread of the extension's, and
        the returned tracking's ``proven_at`` (``time.monotonic()``) says up
        to when every change has been heard, renewed every third of
        ``max_stale`` seconds. ``close()`` stops it; so does ``ext.close()``.
        Not on the embedded server (memory://): a RuntimeError there."""
        return self._registration.track_keys(prefix, sink, max_stale)

    @property
    def telemetry(self) -> Telemetry:
        """The registration's OpenTelemetry instruments and spans: declare
        yours with ``counter``, ``histogram``, ``gauge`` and ``span``, named
        after the plugin (``"leaderboard.scores"`` becomes
        ``flask_core_redis.leaderboard.scores``), each with the attributes
        it may carry. With the ``OTEL`` key off they do nothing."""
        return self._registration.telemetry

    def serializer(self) -> Any:
        """The serializer the first plugin in hook order supplies through
        ``core_redis_serializer``, or None."""
        return self._serializer()

    def setting(self, key: Key) -> Any:
        """Read and validate one of the plugin's own keys (``{prefix}_{suffix}``):
        app.config, then the environment, then ``.env``, then the key's default."""
        return self._source.get(key)

    def key(self, namespace: str, *parts: object) -> str:
        """``KEY_PREFIX + namespace + ":" + parts``, e.g. ``shop:cache:v1:user:7``."""
        return ":".join([f"{self.key_prefix}{namespace}", *map(str, parts)])

    def slot_tag(self, namespace: str, *parts: object) -> str:
        """``KEY_PREFIX + "{" + namespace:parts + "}"``, e.g. ``shop:{cache:profiles}``:
        a Cluster hash tag after the prefix. Keys that start with the same tag
        live in one slot, so one script may use them all; the prefix still
        starts every key, so an ACL user confined to ``~shop:*`` reaches them."""
        return self.key_prefix + "{" + ":".join([namespace, *map(str, parts)]) + "}"
