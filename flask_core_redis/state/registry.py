"""The client registry: what one ``CoreRedis`` registration keeps for one
app (:class:`RedisState`: its settings, connection events, plugins, and its
clients, built on first use, one per kind), and the registrations of each app
by config prefix, in ``app.extensions["core_redis"]``."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ConfigSource, Settings
from ..connection import (
    AnyClient,
    ConnectionEvents,
    KeyTracking,
    MasterWatch,
    TrackingSink,
    build_async_client,
    build_client,
    build_master_watch,
    log_event,
)
from ..connection.redis_py import pool_usage
from ..connection.tracking import bounds, masters_of
from ..plugin_api.manager import Plugins
from ..telemetry import OFF, ConnectionTelemetry, Telemetry, enable_redis_py_metrics
from .apps import current_app_object, is_quart

if TYPE_CHECKING:
    from .apps import AnyApp
from .async_clients import AsyncClients
from .health import HealthCheck
from .lifecycle import close_at_exit
from .unit_of_work import Closeable, UnitOfWork

EXTENSION_KEY = "core_redis"

#: The kinds of client a registration builds, as its pool gauge names them:
#: the shared one, those kept by name, duplicates, and the asyncio ones.
CLIENT_KINDS = ("shared", "fail-fast", "health", "tracking", "text", "bytes", "rq",
                "duplicate", "async:shared", "async:fail-fast", "async:health",
                "async:text", "async:bytes")


class RedisState:
    """Settings, connection events, plugins and clients of one registration
    on one app."""

    def __init__(self, settings: Settings, options: dict[str, Any], source: ConfigSource,
                 app_name: str) -> None:
        self.settings = settings
        self.options = options
        self.events = ConnectionEvents(settings.prefix)
        self.events.subscribe(log_event)
        #: The registration's telemetry (:data:`~flask_core_redis.telemetry.OFF`
        #: unless ``OTEL`` is on).
        self.telemetry: Telemetry = OFF
        self._connection_telemetry: ConnectionTelemetry | None = None
        self._client: AnyClient | None = None
        self._own_clients: dict[str, AnyClient] = {}
        self._watch: MasterWatch | None = None
        self._duplicates: weakref.WeakSet[Any] = weakref.WeakSet()
        self._trackings: list[KeyTracking] = []
        # Reentrant: a plugin's client_created hook may itself ask for a client.
        self._lock = threading.RLock()
        self._async_clients = AsyncClients(self._build_async)
        if settings.otel:  # once pool_usage() can answer: a reader may ask at once
            self._start_telemetry()
        self.plugins = Plugins(self, source, app_name)
        self._unit_of_work = UnitOfWork(settings.prefix)
        self._health = HealthCheck(settings, self.plugins, self.own_client,
                                   self._async_clients.get, self._connection_telemetry)
        close_at_exit(self)

    def __repr__(self) -> str:
        return f"<RedisState {self.settings.prefix} {self.settings.mode} {self.settings.address}>"

    def _start_telemetry(self) -> None:
        """Record the connection's instruments, and redis-py's own metrics.
        The pool gauge holds this registration weakly: an app dropped
        without ``ext.close()`` is not kept by the meter."""
        self.telemetry = Telemetry(True, self.settings.prefix)
        enable_redis_py_metrics(self.settings.otel_redis_py_metrics)
        me = weakref.ref(self)

        def pools() -> list[tuple[str, int, int]] | None:
            state = me()
            return None if state is None else state.pool_usage()

        self._connection_telemetry = ConnectionTelemetry(self.telemetry, self.settings.mode,
                                                         pools, CLIENT_KINDS)
        self.events.subscribe(self._connection_telemetry.event)

    def pool_usage(self) -> list[tuple[str, int, int]]:
        """``(client kind, in use, idle)`` for each kind of client built and
        not closed, the connections of every client of a kind added up.
        Without the registration's lock, which a connect may hold for
        CONNECT_TIMEOUT: the metric reader that asks must not wait on it."""
        built = [("shared", self._client), *list(self._own_clients.items()),
                 *(("duplicate", client) for client in self._duplicates_now())]
        built += [(f"async:{kind}", client) for kind, client in self._async_clients.built()]
        usage: dict[str, tuple[int, int]] = {}
        for kind, client in built:
            if client is not None:
                used, idle = pool_usage(client)
                was_used, was_idle = usage.get(kind, (0, 0))
                usage[kind] = (was_used + used, was_idle + idle)
        return [(kind, used, idle) for kind, (used, idle) in usage.items()]

    def _duplicates_now(self) -> list[AnyClient]:
        """The duplicates alive now; none if the set changed while read (the
        next reading counts them)."""
        try:
            return list(self._duplicates)
        except RuntimeError:
            return []

    def start(self, app: AnyApp) -> None:
        """Set the plugins up for ``app``, feed them connection events, and close
        what requests leave open."""
        self.plugins.setup(app)  # type: ignore[arg-type]  # a Flask or Quart app
        self.events.subscribe(self.plugins.connection_event)
        if is_quart(app):
            self._serve_with(app)
        else:
            self._unit_of_work.install(app)  # type: ignore[arg-type]  # a Flask app

    def _serve_with(self, app: Any) -> None:
        """On a Quart app: home the asyncio clients on its serving loop while
        it serves, and close them when it stops. (What a Quart request makes
        with duplicate() or subscribe() is not closed per request: it lives
        until ext.close(), or until the app drops it.)"""

        async def serve() -> None:
            self.serve_on(asyncio.get_running_loop())

        app.before_serving(serve)
        app.after_serving(self.stop_serving)

    # Clients -------------------------------------------------------------

    @property
    def client(self) -> AnyClient:
        """The shared, pooled client, built on first use."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    # Stored before the plugins hear of it, so that a plugin
                    # asking for the client then gets this one.
                    self._client = self._build(self.settings)
                    try:
                        self._announce(self._client)
                    except BaseException:
                        self._client = None
                        raise
                client = self._client
        return client

    def own_client(self, name: str, *, duplicate: bool = False,
                   options: dict[str, Any] | None = None, **changes: Any) -> AnyClient:
        """A pooled client kept under ``name`` for a part that needs other
        settings (RQ's bytes, the health check's bounded reads ...): the
        registration's settings with ``changes`` (and ``options`` in place
        of the app's redis-py options), built once, closed with the shared
        client. ``duplicate`` builds it as :meth:`duplicate` does."""
        client = self._own_clients.get(name)  # the hot path takes no lock
        if client is not None:
            return client
        with self._lock:
            client = self._own_clients.get(name)
            if client is None:
                settings = dataclasses.replace(self.settings, **changes)
                client = self._own_clients[name] = self._announce(
                    self._build(settings, duplicate=duplicate, options=options))
            return client

    def decoding_client(self, decode_responses: bool) -> AnyClient:
        """The shared client if it decodes replies as asked; else a second
        shared, pooled client that does (built once, closed with the first)."""
        if decode_responses == self.settings.decode_responses:
            return self.client
        return self.own_client("text" if decode_responses else "bytes",
                               decode_responses=decode_responses)

    def fail_fast_client(self) -> AnyClient:
        """The shared client when SOCKET_TIMEOUT bounds its reads; else a pooled
        client of its own whose reads wait at most CONNECT_TIMEOUT."""
        if self.settings.socket_timeout_ms is not None:
            return self.client
        return self.own_client("fail-fast", socket_timeout_ms=self.settings.connect_timeout_ms)

    def duplicate(self) -> AnyClient:
        """A new client with its own pool: no read timeout, health checks on."""
        client = self._announce(self._build(self.settings, duplicate=True))
        self._duplicates.add(client)
        return client

    def _build(self, settings: Settings, duplicate: bool = False,
               options: dict[str, Any] | None = None) -> AnyClient:
        """A new client; in Sentinel mode, following the registration's one
        watch on the master."""
        return build_client(settings, self.events, self.options if options is None else options,
                            duplicate=duplicate, watch=self._master_watch())

    def track_keys(self, prefix: str, sink: TrackingSink, max_stale: float) -> KeyTracking:
        """Start hearing, in ``sink``, of every change to a key under
        ``prefix`` on every master, with delivery proven at least every
        ``max_stale`` seconds (:mod:`~flask_core_redis.connection.tracking`).
        The connections are RESP2 whatever the app's ``protocol``, and their
        reads wait at most CONNECT_TIMEOUT; ``close()`` stops it."""
        if self.settings.mode == "memory":
            raise RuntimeError("the embedded server (memory://) has no CLIENT TRACKING")

        # redis-py's own client-side cache needs RESP3: not on these connections.
        options = {**{name: value for name, value in self.options.items()
                      if name not in ("cache", "cache_config")}, "protocol": 2}

        def client() -> AnyClient:
            return self.own_client(
                "tracking", options=options, decode_responses=False,
                health_check_interval=0, socket_timeout_ms=self.settings.connect_timeout_ms)

        cluster = self.settings.mode == "cluster"
        tracking = KeyTracking(
            masters_of(client), prefix, sink,
            **bounds(max_stale, self.settings.connect_timeout),
            topology_seconds=max_stale / 2 if cluster else None, name=self.settings.prefix,
            encoding=self.options.get("encoding", "utf-8"),
            encoding_errors=self.options.get("encoding_errors", "strict"))
        with self._lock:
            self._trackings = [*(t for t in self._trackings if t.running), tracking]
        return tracking

    def _master_watch(self) -> MasterWatch | None:
        """In Sentinel mode, the registration's one watch on the master, made
        with the first client, blocking or asyncio."""
        with self._lock:
            if self.settings.mode == "sentinel" and self._watch is None:
                self._watch = build_master_watch(self.settings, self.events, self.options)
                # It holds nothing of this registration: an app dropped
                # without ext.close() does not keep its thread running.
                weakref.finalize(self, self._watch.close, False)
            return self._watch

    # asyncio clients -------------------------------------------------------

    def async_client(self) -> Any:
        """The shared asyncio client for the running loop (see
        :mod:`.async_clients`)."""
        return self._async_clients.get("shared")

    def async_decoding_client(self, decode_responses: bool) -> Any:
        """:meth:`decoding_client`'s asyncio counterpart."""
        if decode_responses == self.settings.decode_responses:
            return self.async_client()
        return self._async_clients.get("text" if decode_responses else "bytes",
                                       decode_responses=decode_responses)

    def fail_fast_async_client(self) -> Any:
        """:meth:`fail_fast_client`'s asyncio counterpart."""
        if self.settings.socket_timeout_ms is not None:
            return self.async_client()
        return self._async_clients.get(
            "fail-fast", socket_timeout_ms=self.settings.connect_timeout_ms)

    def _build_async(self, changes: dict[str, Any], home: asyncio.AbstractEventLoop) -> Any:
        settings = dataclasses.replace(self.settings, **changes)
        return build_async_client(settings, self.events, self.options, home,
                                  watch=self._master_watch())

    def async_duplicate(self, home: asyncio.AbstractEventLoop) -> Any:
        """A new asyncio client with its own pool, homed on ``home``, for a
        subscription read there: no read timeout, health checks on. Its
        opener closes it."""
        return build_async_client(self.settings, self.events, self.options, home,
                                  duplicate=True, watch=self._master_watch())

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Home the asyncio clients asked for from ``loop`` on it (an app
        served on one loop for its life: Quart's)."""
        self._async_clients.serve_on(loop)

    async def stop_serving(self) -> None:
        """Close the asyncio clients homed on the running loop."""
        await self._async_clients.stop_serving()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the running loop: the asyncio
        clients closed on their homes, the rest (blocking pools, a Sentinel
        watch's threads) in a worker thread."""
        await self._async_clients.aclose()
        await asyncio.to_thread(self.close)

    def _announce(self, client: AnyClient) -> AnyClient:
        """Tell the plugins of a new client; if one fails, close the client."""
        try:
            self.plugins.client_created(client)
        except BaseException:
            client.close()
            raise
        return client

    # What requests and CLI commands leave open, and the health check --------

    def close_with_unit_of_work(self, *resources: Closeable) -> None:
        """Close ``resources`` when the current request's response has been
        sent, or when the current CLI command ends; never, anywhere else
        (:class:`~.unit_of_work.UnitOfWork`)."""
        self._unit_of_work.close_with(*resources)

    def health(self) -> dict[str, Any]:
        """The core report plus each plugin's part, bounded in time
        (:meth:`~.health.HealthCheck.run`)."""
        return self._health.run()

    async def ahealth(self) -> dict[str, Any]:
        """:meth:`health` on the asyncio client (:meth:`~.health.HealthCheck.arun`)."""
        return await self._health.arun()

    def close(self) -> None:
        """Close every client of this registration; the next use opens anew."""
        self.plugins.closing()
        with self._lock:
            clients = [self._client, *self._own_clients.values(), *self._duplicates]
            # Kept: a client made before this close may start it again, and
            # the next close stops it then.
            watch = self._watch
            trackings, self._trackings = self._trackings, []
            self._client = None
            self._own_clients = {}
            self._duplicates = weakref.WeakSet()
        for tracking in trackings:
            tracking.close()
        for client in clients:
            if client is not None:
                client.close()
        self._async_clients.close()
        if watch is not None:
            watch.close()


def registered_states(app: AnyApp) -> dict[str, RedisState]:
    """Every registration on ``app``, by config prefix."""
    states: dict[str, RedisState] = app.extensions.get(EXTENSION_KEY, {})
    return states


def register(app: AnyApp, state: RedisState) -> None:
    """Keep ``state`` as ``app``'s registration for its prefix."""
    app.extensions.setdefault(EXTENSION_KEY, {})[state.settings.prefix] = state


class Registration(Protocol):
    """What an integration needs of a ``CoreRedis``: its config prefix."""

    config_prefix: str


def app_state(app: AnyApp, prefix: str) -> RedisState:
    """``app``'s registration for ``prefix``; a RuntimeError that says what to
    do before ``init_app``."""
    state = registered_states(app).get(prefix)
    if state is None:
        raise RuntimeError(
            f"CoreRedis (config_prefix={prefix!r}) is not registered on app "
            f"{app.name!r}. Call ext.init_app(app) in your app factory first.")
    return state


def current_state(prefix: str) -> RedisState:
    """The current app's registration for ``prefix``; a RuntimeError that says
    what to do outside an app context or before ``init_app``."""
    app = current_app_object()
    if app is None:
        raise RuntimeError(
            "CoreRedis was used outside an application context. Use it inside a "
            "request, a CLI command, or `with app.app_context():`.")
    return app_state(app, prefix)
