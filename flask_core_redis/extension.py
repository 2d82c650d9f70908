"""The Flask extension: ``CoreRedis``, the facade over one registration's
per-app state (:mod:`.state`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from flask import Flask
from redis.client import PubSub

from .cli import redis_group
from .config import Settings, config_source, load_settings, settings_from
from .connection import AnyClient, ConnectionEvents
from .connection.async_pubsub import apublish, asubscribe
from .connection.options import accepted_options, any_mode_options, check_options
from .connection.pubsub import ShardedPubSub, publish, subscribe
from .errors import PluginNotAvailable
from .plugin_api.manager import Plugins, available_plugins
from .routes import register_routes
from .state import RedisState, current_state, register, registered_states
from .state.apps import has_app_context

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger("flask_core_redis")

T = TypeVar("T")


class CoreRedis:
    """One managed Redis client per Flask app.

    ``config_prefix`` selects the configuration keys (``REDIS_URL`` for
    ``"REDIS"``); two instances with different prefixes can serve one app.
    ``default_url`` is the server to use when the configuration names none
    (no URL, HOST, PORT, SENTINELS or CLUSTER_NODES key anywhere), e.g.
    ``"memory://"``. ``client_options`` go to the redis-py client as they are;
    one it does not accept is a TypeError, as are the options built from
    configuration (retry, connection class, addresses).

    Plugins are reached with :meth:`plugin` (typed), :attr:`plugins` (by
    name), or as attributes named after them: ``ext.presence``, ``ext.cache``
    (inside an app context, ``dir(ext)`` lists the enabled ones).

    Integrations with other libraries are functions of
    :mod:`flask_core_redis.integrations` that take the extension first:
    ``queue(ext, "emails")``, ``socketio_manager(ext)``,
    ``session_interface(ext, app)``, ``limiter_storage(ext)``,
    ``kombu_broker(ext)``, ``init_rq_dashboard(ext, app)``."""

    def __init__(self, app: Flask | Quart | None = None, *, config_prefix: str = "REDIS",
                 default_url: str | None = None, **client_options: Any) -> None:
        check_options(client_options, any_mode_options(),
                      "no client this extension builds takes it", config_prefix)
        if default_url is not None:  # its grammar, now rather than on some later app
            load_settings(config_prefix, {}, {}, {}, default_url)
        self.config_prefix = config_prefix
        self.default_url = default_url
        self.client_options = client_options
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<CoreRedis config_prefix={self.config_prefix!r}>"

    def init_app(self, app: Flask | Quart) -> None:
        """Read and validate configuration, set the plugins up, register the
        CLI and the configured routes. No network I/O."""
        if self.config_prefix in registered_states(app):
            raise RuntimeError(
                f"A CoreRedis instance with config_prefix={self.config_prefix!r} is already "
                f"registered on app {app.name!r}. Call init_app once per app, or give the "
                "second instance its own config_prefix (e.g. 'CACHE_REDIS').")
        source = config_source(self.config_prefix, app.config)
        settings = settings_from(source, self.default_url)
        check_options(self.client_options, accepted_options(settings),
                      f"the {settings.mode} client does not take it", self.config_prefix)
        state = RedisState(settings, dict(self.client_options), source, app.name)
        state.start(app)
        register(app, state)
        register_routes(app, state)
        logger.info("[%s] configured %s mode at %s; plugins: %s", settings.prefix,
                    settings.mode, settings.address, ", ".join(state.plugins.records))
        if "redis" not in app.cli.commands:
            app.cli.add_command(redis_group)

    def _state(self) -> RedisState:
        return current_state(self.config_prefix)

    @property
    def settings(self) -> Settings:
        """The validated settings of the current app (secrets masked in repr)."""
        return self._state().settings

    @property
    def events(self) -> ConnectionEvents:
        """The current app's connection events, for subscribers of your own."""
        return self._state().events

    def get_client(self, decode_responses: bool | None = None) -> AnyClient:
        """The shared, pooled client of the current app. ``decode_responses=False``
        gives one that returns bytes (for pickled or msgpack values: Flask-Session,
        Flask-Caching, rq-dashboard), ``True`` one that returns str, whatever
        ``DECODE_RESPONSES`` says: a second shared client when it differs, with
        the same settings, retries, events and plugins, closed by :meth:`close`."""
        if decode_responses is None:
            return self._state().client
        return self._state().decoding_client(decode_responses)

    def _shared_client(self) -> AnyClient:
        return self._state().client

    client = property(_shared_client, doc="The shared, pooled client of the current app.")

    # asyncio ------------------------------------------------------------------

    def get_async_client(self, decode_responses: bool | None = None) -> Any:
        """The shared asyncio client of the current app (``redis.asyncio.Redis``,
        or ``RedisCluster`` on Cluster; fakeredis's on ``memory://``): the
        same settings, retries, events and pool limits as :meth:`get_client`,
        ``decode_responses`` likewise. Its connections are pooled across
        requests whatever event loop each runs in: on Quart, on the serving
        loop; elsewhere (Flask's ``async def`` views), on the extension's own
        loop thread, to which each call is handed. Closed by :meth:`aclose`,
        :meth:`close`, or when a Quart app stops serving."""
        if decode_responses is None:
            return self._state().async_client()
        return self._state().async_decoding_client(decode_responses)

    def _shared_async_client(self) -> Any:
        return self._state().async_client()

    async_client = property(_shared_async_client,
                            doc="The shared asyncio client of the current app "
                                "(:meth:`get_async_client`).")

    def duplicate(self) -> AnyClient:
        """A new client with its own pool and the same settings, for pub/sub and
        blocking commands: no read timeout, health checks on. Made inside a
        request, it is closed once the response is sent; inside a CLI command,
        when the command ends; otherwise by :meth:`close`, unless you close it
        first."""
        state = self._state()
        client = state.duplicate()
        state.close_with_unit_of_work(client)
        return client

    def subscribe(self, *channels: str) -> PubSub | ShardedPubSub:
        """A PubSub subscribed to ``channels``, each after ``KEY_PREFIX`` (with
        ``shop:``, ``subscribe("news")`` listens on ``shop:news``, the name its
        messages carry), on a duplicate connection of its own (no read
        timeout, health checks on; sharded in Cluster). Closed as
        :meth:`duplicate` says."""
        state = self._state()
        client = state.duplicate()
        try:
            prefix = state.settings.key_prefix
            subscription = subscribe(client, *(prefix + channel for channel in channels))
        except BaseException:
            client.close()
            raise
        state.close_with_unit_of_work(subscription, client)
        return subscription

    def publish(self, channel: str, message: str | bytes) -> int:
        """Publish on ``channel`` after ``KEY_PREFIX`` (``shop:news`` for
        ``"news"``) on the current app's Redis (sharded in Cluster); the number
        of subscribers that received it."""
        return publish(self.client, self.settings.key_prefix + channel, message)

    def asubscribe(self, *channels: str) -> AsyncIterator[dict[str, Any]]:
        """:meth:`subscribe` for asyncio code: ``async for message in
        ext.asubscribe("news")`` yields each message published on
        ``channels`` (each after ``KEY_PREFIX``) as a dict (``type``,
        ``channel``, ``data``), subscription confirmations left out. It reads
        on a client of its own, opened on the running event loop when the
        iteration starts and closed when it ends (``aclose()``, ``break``,
        cancellation); it subscribes again after a lost connection or a
        failover, as :meth:`subscribe` does."""
        state = self._state()
        prefix = state.settings.key_prefix
        return asubscribe(state.async_duplicate, *(prefix + channel for channel in channels),
                          events=state.events)

    async def apublish(self, channel: str, message: str | bytes) -> int:
        """:meth:`publish` for asyncio code, on :attr:`async_client`."""
        return await apublish(self.async_client, self.settings.key_prefix + channel, message)

    # Plugins -----------------------------------------------------------------

    @property
    def plugins(self) -> dict[str, Any]:
        """The current app's enabled plugins by name, in hook order."""
        return {record.name: record.plugin for record in self._state().plugins}

    def plugin(self, cls: type[T]) -> T:
        """The current app's instance of plugin class ``cls``, built-in or
        third-party: ``ext.plugin(PresencePlugin).is_online(7)``. Outside an app
        context, what ``cls.outside_app_context(resolve)`` returns if the class
        defines it (the cache's decorator works at import time)."""
        stand_in = getattr(cls, "outside_app_context", None)
        if stand_in is not None and not has_app_context():
            return stand_in(lambda: self._instance_of(cls))  # type: ignore[no-any-return]
        return self._instance_of(cls)

    def __dir__(self) -> list[str]:
        """The attributes, and inside an app context the names of the current
        app's enabled plugins (``cache``, ``otp``...), for completion."""
        names = set(super().__dir__())
        if has_app_context():
            with contextlib.suppress(RuntimeError):  # not registered on this app
                names.update(self._state().plugins.records)
        return sorted(names)

    def __getattr__(self, name: str) -> Any:
        """``ext.<name>``: the current app's plugin named ``name``."""
        if name.startswith("_") or "config_prefix" not in vars(self):
            raise AttributeError(name)
        if hasattr(type(self), name):  # one of ours, which failed inside
            raise AttributeError(f"{type(self).__name__}.{name} raised AttributeError")
        if has_app_context():
            record = self._state().plugins.records.get(name)
            if record is not None:
                return record.plugin
        available = available_plugins().get(name)
        if available is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}, "
                                 f"and no installed plugin is named {name!r}")
        if has_app_context():
            return self._plugin_named(name)  # raises: not enabled
        stand_in = getattr(available.load(), "outside_app_context", None)
        if stand_in is None:
            return self._plugin_named(name)  # raises: outside an app context
        return stand_in(lambda: self._plugin_named(name))

    def _plugins(self) -> Plugins:
        try:
            return self._state().plugins
        except RuntimeError as error:  # outside an app context, or before init_app
            raise PluginNotAvailable(str(error)) from None

    def _instance_of(self, cls: type[T]) -> T:
        plugins = self._plugins()
        found = plugins.instance_of(cls)
        if found is None:
            self._not_enabled(f"no enabled plugin is a {getattr(cls, '__qualname__', cls)!r}",
                              plugins)
        return found

    def _plugin_named(self, name: str) -> Any:
        plugins = self._plugins()
        record = plugins.records.get(name)
        if record is None:
            self._not_enabled(f"the {name!r} plugin is not enabled on this app", plugins)
        return record.plugin

    def _not_enabled(self, what: str, plugins: Plugins) -> NoReturn:
        raise PluginNotAvailable(f"{what}; enabled: {plugins.summary()} (see "
                                 f"{self.config_prefix}_PLUGINS and "
                                 f"{self.config_prefix}_DISABLED_PLUGINS)")

    # Health and lifecycle ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        """A health report of the current app's Redis; never raises because
        Redis is down."""
        return self._state().health()

    async def ahealth(self) -> dict[str, Any]:
        """:meth:`health` from async code, through the asyncio client: the
        same report, bounded in time as it is; never raises because Redis is
        down."""
        return await self._state().ahealth()

    def close(self) -> None:
        """Close every pool this extension opened for the current app, asyncio
        clients included. Idempotent; the next use opens a new pool."""
        self._state().close()

    async def aclose(self) -> None:
        """:meth:`close` from async code: the asyncio clients are closed on
        their event loops without blocking the running one."""
        await self._state().aclose()
