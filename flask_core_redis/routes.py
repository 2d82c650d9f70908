"""What the extension adds to the web app when configured: a health endpoint
(``REDIS_HEALTH_ROUTE``) and a 503 for Redis outages (``REDIS_ERROR_HANDLER``):
redis-py's outage errors (a connection refused or lost, a timeout, a Cluster
slot without a master), and :class:`RedisUnavailable`, the one a plugin
raises in its own words."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import OUTAGE_ERRORS, RedisUnavailable, describe_error

if TYPE_CHECKING:
    from .state import RedisState
    from .state.apps import AnyApp

logger = logging.getLogger("flask_core_redis")

#: What the error handler answers with a 503.
_OUTAGES: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, RedisUnavailable)


def register_routes(app: AnyApp, state: RedisState) -> None:
    """The health route and the error handler, when configured."""
    settings = state.settings
    if settings.health_route:
        def health() -> tuple[Any, int]:
            report = state.health()
            return app.json.response(report), 200 if report["ok"] else 503

        app.add_url_rule(settings.health_route, f"core_redis_health_{settings.prefix.lower()}",
                         health, methods=["GET"])
    if settings.error_handler:
        def unavailable(error: Exception) -> tuple[Any, int]:
            logger.error("a request failed because Redis is unavailable: %s",
                         describe_error(error))
            return app.json.response(UNAVAILABLE), 503

        for outage in _OUTAGES:
            app.register_error_handler(outage, unavailable)


#: The body of the error handler's 503.
UNAVAILABLE = {"error": "redis_unavailable",
               "message": "A backing service is unavailable; try again shortly."}
