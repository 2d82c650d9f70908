"""rq-dashboard on the app's RQ connection:
``init_rq_dashboard(ext, app, url_prefix="/rq")``.

Needs rq-dashboard: ``pip install rq-dashboard``. The dashboard is mounted
without authentication, and it shows, requeues and deletes jobs: protect its
URL prefix (in the proxy in front, or with an ``app.before_request`` that
checks the path) before exposing it.

rq-dashboard builds a client of its own from ``RQ_DASHBOARD_REDIS_URL`` on
every request that names an instance, and reads that key only in its own
grammar. Registered here, its blueprint reads the connection the app's
queues use (those of :func:`~.queues.queue`) instead: one instance, the app's
server, no client per request."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from flask import Flask, abort, current_app, request

from ..state import RedisState, Registration, app_state
from ._missing import missing_library
from .queues import queue_connection

__all__ = ["init_rq_dashboard"]


def init_rq_dashboard(ext: Registration, app: Flask, url_prefix: str = "/rq") -> None:
    """Serve rq-dashboard at ``url_prefix`` on ``app``, on the queue
    connection of ``ext`` (a :class:`~flask_core_redis.CoreRedis` registered
    on ``app``), without authentication of its own: hooks that check requests
    to the ``rq_dashboard`` blueprint, registered before or after, still run.
    Cluster mode is refused with a ConfigurationError, as for RQ."""
    try:
        import rq_dashboard
    except ImportError as error:
        raise missing_library(__name__, "rq-dashboard", "rq-dashboard") from error
    state = app_state(app, ext.config_prefix)
    queue_connection(state)  # refuses Cluster now, not on the first page
    # Shown in the dashboard's instance list; never connected to.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (state.settings.address,)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=url_prefix)
    # In place of rq-dashboard's own hook, which connects from the URL above;
    # every other hook of the blueprint (an authentication check) stays.
    name = rq_dashboard.blueprint.name
    own_hook = getattr(import_module("rq_dashboard.web"), "push_rq_connection", None)
    kept = [hook for hook in app.before_request_funcs.get(name, []) if hook is not own_hook]
    app.before_request_funcs[name] = [_use_the_app_connection(state), *kept]


def _use_the_app_connection(state: RedisState) -> Any:
    def use_the_app_connection() -> None:
        if (request.view_args or {}).get("instance_number", 0) != 0:
            abort(404)
        current_app.redis_conn = queue_connection(state)  # type: ignore[attr-defined]

    return use_the_app_connection
