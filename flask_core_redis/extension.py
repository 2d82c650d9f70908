"""The Flask extension: ``CoreRedis``."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app, has_app_context
from flask.cli import AppGroup
from redis import Redis

from .clients import MANAGED_OPTIONS, AnyClient, build_client
from .config import config_source, settings_from
from .errors import ConfigurationError
from .events import ConnectionEvents, log_event
from .health import check_health
from .plugin_context import PluginContext
from .plugin_manager import Plugins
from .pubsub import publish, subscribe
from .queues import make_queue, queue_client
from .settings import Settings
from .web import register_web

if TYPE_CHECKING:
    from .plugins.cache import CachePlugin
    from .plugins.otp import OtpPlugin
    from .plugins.presence import PresencePlugin

EXTENSION_KEY = "core_redis"

logger = logging.getLogger("flask_core_redis")


class RedisState:
    """What one registration keeps per app: settings, events and its clients.

    The shared client is built on first use, so ``init_app`` does no network
    I/O and an app starts while Redis is down. Every pool opened here closes on
    :meth:`close` and at interpreter exit."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        self.events = ConnectionEvents(settings.prefix)
        self.events.subscribe(log_event)
        self.plugins: Plugins | None = None
        self._plugin_commands: click.Group | None = None
        self._client: AnyClient | None = None
        self._queue_client: Redis | None = None
        self._duplicates: weakref.WeakSet[Any] = weakref.WeakSet()
        # Reentrant: a plugin's client_created hook may itself ask for a client.
        self._lock = threading.RLock()
        _open_states.add(self)

    def __repr__(self) -> str:
        return f"<RedisState {self.settings.prefix} {self.settings.mode} {self.settings.address}>"

    @property
    def client(self) -> AnyClient:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    # Stored before the plugins hear of it, so that a plugin
                    # asking for the client then gets this one.
                    self._client = build_client(self.settings, self.events, self.options)
                    self._announce(self._client)
                client = self._client
        return client

    def queue_client(self) -> Redis:
        """RQ's client (bytes, no read timeout), built once."""
        with self._lock:
            if self._queue_client is None:
                self._queue_client = queue_client(self)
                self._announce(self._queue_client)
            return self._queue_client

    def duplicate(self) -> AnyClient:
        client = self._announce(
            build_client(self.settings, self.events, self.options, duplicate=True))
        self._duplicates.add(client)
        return client

    def plugins_enabled(self) -> list[str]:
        return [record.name for record in self.plugins] if self.plugins else []

    def _announce(self, client: AnyClient) -> AnyClient:
        if self.plugins is not None:
            self.plugins.client_created(client)
        return client

    def attach_plugins(self, plugins: Plugins, app: Flask) -> None:
        """Set the plugins up for ``app`` and feed them connection events."""
        plugins.setup(app)
        self.plugins = plugins
        self.events.subscribe(plugins.connection_event)

    def plugin_commands(self) -> click.Group:
        """The subcommands plugins add under ``flask redis``, built once."""
        if self._plugin_commands is None:
            group = AppGroup("plugins")
            if self.plugins is not None:
                self.plugins.add_commands(group)
            self._plugin_commands = group
        return self._plugin_commands

    def health(self) -> dict[str, Any]:
        """The core report plus each plugin's part; ok only if all parts are."""
        report = check_health(lambda: self.client, self.settings)
        if self.plugins is not None:
            parts = self.plugins.health()
            report["plugins"] = parts
            report["ok"] = report["ok"] and all(
                part.get("ok", True) for part in parts.values() if isinstance(part, dict))
        return report

    def close(self) -> None:
        if self.plugins is not None:
            self.plugins.closing()
        with self._lock:
            clients = [self._client, self._queue_client, *self._duplicates]
            self._client = self._queue_client = None
            self._duplicates = weakref.WeakSet()
        for client in clients:
            if client is not None:
                _close_client(client)


def _close_client(client: AnyClient) -> None:
    client.close()
    pool = getattr(client, "connection_pool", None)
    sentinel = getattr(pool, "sentinel_manager", None)
    if sentinel is not None:  # the links to the sentinels themselves
        for sentinel_client in sentinel.sentinels:
            sentinel_client.close()


_open_states: weakref.WeakSet[RedisState] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for state in list(_open_states):
        state.close()


class CoreRedis:
    """One managed Redis client per Flask app.

    ``config_prefix`` selects the configuration keys (``REDIS_URL`` for
    ``"REDIS"``); two instances with different prefixes can serve one app.
    ``client_options`` are passed to the redis-py client as they are, except the
    options built from configuration (retry, connection class, addresses)."""

    def __init__(self, app: Flask | None = None, *, config_prefix: str = "REDIS",
                 **client_options: Any) -> None:
        managed = sorted(MANAGED_OPTIONS & client_options.keys())
        if managed:
            raise TypeError(
                f"CoreRedis() does not take {', '.join(managed)}: the extension builds "
                f"them from {config_prefix}_* configuration (see the README)")
        self.config_prefix = config_prefix
        self.client_options = client_options
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<CoreRedis config_prefix={self.config_prefix!r}>"

    def init_app(self, app: Flask) -> None:
        """Read and validate configuration, register the CLI. No network I/O."""
        registry: dict[str, RedisState] = app.extensions.setdefault(EXTENSION_KEY, {})
        if self.config_prefix in registry:
            raise RuntimeError(
                f"A CoreRedis instance with config_prefix={self.config_prefix!r} is already "
                f"registered on app {app.name!r}. Call init_app once per app, or give the "
                "second instance its own config_prefix (e.g. 'CACHE_REDIS').")
        source = config_source(self.config_prefix, app.config)
        settings = settings_from(source)
        state = RedisState(settings, dict(self.client_options))
        state.attach_plugins(Plugins(settings, PluginContext(state, source, app.name)), app)
        registry[self.config_prefix] = state
        register_web(app, state)
        logger.info("[%s] configured %s mode at %s; plugins: %s", settings.prefix,
                    settings.mode, settings.address, ", ".join(state.plugins_enabled()))
        from .cli import redis_group

        if "redis" not in app.cli.commands:
            app.cli.add_command(redis_group)

    def _state(self) -> RedisState:
        try:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:
            raise RuntimeError(
                "CoreRedis was used outside an application context. Use it inside a "
                "request, a CLI command, or `with app.app_context():`.") from None
        state = app.extensions.get(EXTENSION_KEY, {}).get(self.config_prefix)
        if state is None:
            raise RuntimeError(
                f"CoreRedis (config_prefix={self.config_prefix!r}) is not registered on "
                f"app {app.name!r}. Call ext.init_app(app) in your app factory first.")
        assert isinstance(state, RedisState)
        return state

    @property
    def settings(self) -> Settings:
        """The validated settings of the current app (secrets masked in repr)."""
        return self._state().settings

    @property
    def events(self) -> ConnectionEvents:
        """The current app's connection events, for subscribers of your own."""
        return self._state().events

    @property
    def client(self) -> AnyClient:
        """The shared, pooled client of the current app."""
        return self._state().client

    def get_client(self) -> AnyClient:
        """The shared, pooled client of the current app."""
        return self._state().client

    def duplicate(self) -> AnyClient:
        """A new client with its own pool and the same settings, for pub/sub and
        blocking commands: no read timeout, health checks on. Closed by
        :meth:`close` unless you close it first."""
        return self._state().duplicate()

    @property
    def plugins(self) -> dict[str, Any]:
        """The current app's enabled plugins, by name."""
        state = self._state()
        return {record.name: record.plugin for record in state.plugins or ()}

    def _plugin(self, name: str) -> Any:
        plugins = self._state().plugins
        record = plugins.records.get(name) if plugins is not None else None
        if record is None:
            raise RuntimeError(
                f"the {name!r} plugin is not enabled on this app; check "
                f"{self.config_prefix}_PLUGINS and {self.config_prefix}_DISABLED_PLUGINS")
        return record.plugin

    @property
    def presence(self) -> PresencePlugin:
        """Who is online (the built-in ``presence`` plugin) for the current app."""
        return self._plugin("presence")  # type: ignore[no-any-return]

    @property
    def otp(self) -> OtpPlugin:
        """One-time passwords (the built-in ``otp`` plugin) for the current app."""
        return self._plugin("otp")  # type: ignore[no-any-return]

    @property
    def cache(self) -> CachePlugin:
        """The cache (the built-in ``cache`` plugin) for the current app. Outside
        an app context, a stand-in whose ``cached`` decorator resolves the app at
        each call, so ``@ext.cache.cached()`` works at import time."""
        if not has_app_context():
            from .plugins.cache import CacheOfCurrentApp

            return CacheOfCurrentApp(lambda: self._plugin("cache"))  # type: ignore[return-value]
        return self._plugin("cache")  # type: ignore[no-any-return]

    def queue(self, name: str = "default", **options: Any) -> Any:
        """An ``rq.Queue`` on the current app's Redis, with a client of its own.
        In memory mode jobs run as they are enqueued; Cluster is refused."""
        return make_queue(self._state(), name, **options)

    def socketio_manager(self, channel: str = "flask-socketio",
                         write_only: bool = False) -> Any:
        """A python-socketio client manager on the current app's Redis:
        ``SocketIO(app, client_manager=ext.socketio_manager())``. With
        ``write_only=True`` another process (an RQ job, say) can emit."""
        try:
            from .socketio_manager import CoreRedisManager
        except ImportError:
            raise ConfigurationError(
                "Socket.IO needs python-socketio: pip install "
                "'flask-core-redis[socketio]'") from None
        state = self._state()
        return CoreRedisManager(lambda: state.client, state.duplicate, state.events,
                                channel=channel, write_only=write_only)

    def publish(self, channel: str, message: str | bytes) -> int:
        """Publish on the current app's Redis (sharded in Cluster); the number of
        subscribers that received it."""
        return publish(self.client, channel, message)

    def subscribe(self, *channels: str) -> Any:
        """A PubSub subscribed to ``channels``, on a duplicate connection of its
        own (no read timeout, health checks on); closed with :meth:`close`."""
        return subscribe(self.duplicate(), *channels)

    def health(self) -> dict[str, Any]:
        """A health report of the current app's Redis; never raises because
        Redis is down."""
        return self._state().health()

    def close(self) -> None:
        """Close every pool this extension opened for the current app. Idempotent;
        the next use opens a new pool."""
        self._state().close()


def registered_states(app: Flask) -> dict[str, RedisState]:
    """Every registration on ``app``, by config prefix."""
    states: dict[str, RedisState] = app.extensions.get(EXTENSION_KEY, {})
    return states
