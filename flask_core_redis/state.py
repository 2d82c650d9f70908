"""Per-app state: what one ``CoreRedis`` registration keeps for one app, kept
in ``app.extensions["core_redis"][config_prefix]``, and the lifecycle of
every client it opens.

Lifecycle, in one place:

- The shared client is built on first use (``init_app`` does no network I/O)
  and lives until :meth:`RedisState.close` (``ext.close()``) or process exit.
  Requests never open or close it.
- ``duplicate()`` and ``subscribe()`` made by the app inside a request are
  closed when the response has been sent (so a streamed response can read a
  subscription its view made), or at the request's teardown if it ended
  without a response; inside a CLI command, when the command ends. Made
  anywhere else (at start-up, in a background thread), they live until
  ``ext.close()`` or process exit. Only weak references are kept: one the app
  drops is closed by garbage collection, as before.
- Clients an integration builds for itself (RQ's) live like the shared one.
- At process exit every registration still open is closed."""

from __future__ import annotations

import atexit
import contextvars
import dataclasses
import functools
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import click
from flask import Flask, Response, current_app, has_request_context, request
from flask.cli import AppGroup

from .config import ConfigSource, Settings
from .connection import (
    AnyClient,
    ConnectionEvents,
    MasterWatch,
    build_client,
    build_master_watch,
    log_event,
)
from .connection.health import check_health, failed_report
from .errors import describe_error
from .plugin_api.manager import Plugins

EXTENSION_KEY = "core_redis"
#: What health() may take beyond CONNECT_TIMEOUT.
HEALTH_MARGIN_SECONDS = 0.5

logger = logging.getLogger("flask_core_redis")


class Closeable(Protocol):
    def close(self) -> Any: ...


class RedisState:
    """Settings, connection events, plugins and clients of one registration
    on one app."""

    def __init__(self, settings: Settings, options: dict[str, Any], source: ConfigSource,
                 app_name: str) -> None:
        self.settings = settings
        self.options = options
        self.events = ConnectionEvents(settings.prefix)
        self.events.subscribe(log_event)
        self._client: AnyClient | None = None
        self._own_clients: dict[str, AnyClient] = {}
        self._watch: MasterWatch | None = None
        self._duplicates: weakref.WeakSet[Any] = weakref.WeakSet()
        self._plugin_commands: click.Group | None = None
        self._health_running = threading.Lock()
        self._scoped_key = f"flask_core_redis.close_after.{settings.prefix}"
        # Reentrant: a plugin's client_created hook may itself ask for a client.
        self._lock = threading.RLock()
        self.plugins = Plugins(self, source, app_name)
        _open_states.add(self)

    def __repr__(self) -> str:
        return f"<RedisState {self.settings.prefix} {self.settings.mode} {self.settings.address}>"

    def start(self, app: Flask) -> None:
        """Set the plugins up for ``app``, feed them connection events, and close
        what requests leave open."""
        self.plugins.setup(app)
        self.events.subscribe(self.plugins.connection_event)
        app.after_request(self._close_after_response)
        app.teardown_request(self._close_left_over)

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
                   **changes: Any) -> AnyClient:
        """A pooled client kept under ``name`` for a part that needs other
        settings (RQ's bytes, the health check's bounded reads ...): the
        registration's settings with ``changes``, built once, closed with the
        shared client. ``duplicate`` builds it as :meth:`duplicate` does."""
        client = self._own_clients.get(name)  # the hot path takes no lock
        if client is not None:
            return client
        with self._lock:
            client = self._own_clients.get(name)
            if client is None:
                settings = dataclasses.replace(self.settings, **changes)
                client = self._own_clients[name] = self._announce(
                    self._build(settings, duplicate=duplicate))
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

    def _build(self, settings: Settings, duplicate: bool = False) -> AnyClient:
        """A new client; in Sentinel mode, following the registration's one
        watch on the master (made with the first client)."""
        with self._lock:
            if settings.mode == "sentinel" and self._watch is None:
                self._watch = build_master_watch(settings, self.events, self.options)
                # It holds nothing of this registration: an app dropped
                # without ext.close() does not keep its thread running.
                weakref.finalize(self, self._watch.close, False)
            return build_client(settings, self.events, self.options, duplicate=duplicate,
                                watch=self._watch)

    def _announce(self, client: AnyClient) -> AnyClient:
        """Tell the plugins of a new client; if one fails, close the client."""
        try:
            self.plugins.client_created(client)
        except BaseException:
            client.close()
            raise
        return client

    # What requests and CLI commands leave open -----------------------------

    def close_with_unit_of_work(self, *resources: Closeable) -> None:
        """Close ``resources`` when the current request's response has been
        sent, or when the current CLI command ends; never, anywhere else."""
        held = [weakref.ref(resource) for resource in resources]
        if has_request_context():
            request.environ.setdefault(self._scoped_key, []).extend(held)
            return
        command = click.get_current_context(silent=True)
        if command is not None:
            command.call_on_close(functools.partial(_close_alive, held))

    def _close_after_response(self, response: Response) -> Response:
        held = request.environ.pop(self._scoped_key, None)
        if held:
            response.call_on_close(functools.partial(_close_alive, held))
        return response

    def _close_left_over(self, error: BaseException | None = None) -> None:
        """A request that ended without a response, or a stream's request
        context that made them while streaming."""
        _close_alive(request.environ.pop(self._scoped_key, ()))

    # Plugins' parts ----------------------------------------------------------

    def plugin_commands(self) -> click.Group:
        """The subcommands plugins add under ``flask redis``, built once."""
        if self._plugin_commands is None:
            group = AppGroup("plugins")
            self.plugins.add_commands(group)
            self._plugin_commands = group
        return self._plugin_commands

    def health(self) -> dict[str, Any]:
        """The core report plus each plugin's part; ok only if all parts are.

        Bounded: it answers within ``CONNECT_TIMEOUT`` plus half a second,
        whatever the servers do. The check runs in a thread of its own (with
        the caller's app context); when it has not answered by then, the report
        says so with ``ok`` false, and until that check ends the next ones say
        it is still waiting, rather than piling up threads on a hung server."""
        limit = self.settings.connect_timeout + HEALTH_MARGIN_SECONDS
        if not self._health_running.acquire(blocking=False):
            return failed_report(self.settings, "the previous health check is still "
                                                "waiting for Redis")
        answers: list[dict[str, Any]] = []

        def check() -> None:
            try:
                answers.append(self._health_report())
            finally:
                self._health_running.release()

        worker = threading.Thread(target=contextvars.copy_context().run, args=(check,),
                                  name="flask-core-redis health", daemon=True)
        worker.start()
        worker.join(limit)
        if answers:
            return answers[0]
        return failed_report(self.settings, f"no answer within {limit * 1000:.0f} ms")

    def _health_report(self) -> dict[str, Any]:
        """The check itself, on a client of its own whose every read waits at
        most CONNECT_TIMEOUT, with no retries; the plugins are asked only when
        the server answered (their parts use the shared client)."""
        report = check_health(self._health_client, self.settings)
        parts = self.plugins.health() if report["ok"] else {}
        report["plugins"] = parts
        report["ok"] = report["ok"] and all(
            part.get("ok", True) for part in parts.values() if isinstance(part, dict))
        return report

    def _health_client(self) -> AnyClient:
        return self.own_client("health", max_retries=0, retry_deadline_ms=None,
                               socket_timeout_ms=self.settings.connect_timeout_ms)

    def close(self) -> None:
        """Close every client of this registration; the next use opens anew."""
        self.plugins.closing()
        with self._lock:
            clients = [self._client, *self._own_clients.values(), *self._duplicates]
            # Kept: a client made before this close may start it again, and
            # the next close stops it then.
            watch = self._watch
            self._client = None
            self._own_clients = {}
            self._duplicates = weakref.WeakSet()
        for client in clients:
            if client is not None:
                client.close()
        if watch is not None:
            watch.close()


def _close_alive(held: Iterable[weakref.ref[Closeable]]) -> None:
    """Close what is still alive; a failure is logged, never raised, since it
    happens after the response or command is over."""
    for reference in held:
        resource = reference()
        try:
            if resource is not None:
                resource.close()
        except Exception as error:
            logger.warning("closing a %s failed: %s", type(resource).__name__,
                           describe_error(error))


_open_states: weakref.WeakSet[RedisState] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for state in list(_open_states):
        state.close()


def registered_states(app: Flask) -> dict[str, RedisState]:
    """Every registration on ``app``, by config prefix."""
    states: dict[str, RedisState] = app.extensions.get(EXTENSION_KEY, {})
    return states


def register(app: Flask, state: RedisState) -> None:
    """Keep ``state`` as ``app``'s registration for its prefix."""
    app.extensions.setdefault(EXTENSION_KEY, {})[state.settings.prefix] = state


class Registration(Protocol):
    """What an integration needs of a ``CoreRedis``: its config prefix."""

    config_prefix: str


def app_state(app: Flask, prefix: str) -> RedisState:
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
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        raise RuntimeError(
            "CoreRedis was used outside an application context. Use it inside a "
            "request, a CLI command, or `with app.app_context():`.") from None
    return app_state(app, prefix)
