"""rq-dashboard on the app's RQ connection.

rq-dashboard builds a client of its own from ``RQ_DASHBOARD_REDIS_URL`` on
every request that names an instance, and reads that key only in its own
grammar. Registered here, its blueprint reads the app's queue connection
(:func:`~.queues.queue_connection`) instead: one instance, the app's server,
no client per request."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, current_app, request

from ..errors import ConfigurationError
from ..state import RedisState, Registration, app_state
from .queues import queue_connection


def init_rq_dashboard(app: Flask, ext: Registration, url_prefix: str = "/rq") -> None:
    """Serve rq-dashboard at ``url_prefix`` on ``app``, on ``ext``'s queue
    connection (Cluster is refused, as for RQ)."""
    try:
        import rq_dashboard
    except ImportError:
        raise ConfigurationError(
            "the dashboard needs rq-dashboard: pip install rq-dashboard") from None
    state = app_state(app, ext.config_prefix)
    queue_connection(state)  # refuses Cluster now, not on the first page
    # Shown in the dashboard's instance list; never connected to.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (state.settings.address,)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=url_prefix)
    # Instead of rq-dashboard's own hook, which connects from the URL above.
    app.before_request_funcs[rq_dashboard.blueprint.name] = [_use_the_app_connection(state)]


def _use_the_app_connection(state: RedisState) -> Any:
    def use_the_app_connection() -> None:
        if (request.view_args or {}).get("instance_number", 0) != 0:
            abort(404)
        current_app.redis_conn = queue_connection(state)  # type: ignore[attr-defined]

    return use_the_app_connection
