"""The demo: phone login with one-time codes, who is online (live, through
Socket.IO), a cached profile, and a Redis panel, all on flask-core-redis.

Runs on the embedded server by default; set REDIS_URL (or REDIS_HOST,
REDIS_SENTINELS, REDIS_CLUSTER_NODES) in the environment or in a .env file to
use a real Redis.

    flask --app example_app run
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from dotenv import dotenv_values, find_dotenv
from flask import Flask, session
from flask_socketio import SocketIO

from flask_core_redis import CoreRedis

redis_ext = CoreRedis()

TOPOLOGY_KEYS = ("REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES")
EMBEDDED_URL = "memory://example-app"


def _topology_configured_outside() -> bool:
    dotenv_path = find_dotenv(usecwd=True)
    outside = {**(dotenv_values(dotenv_path) if dotenv_path else {}), **os.environ}
    return any(outside.get(key) for key in TOPOLOGY_KEYS)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # Sessions and OTP digests are keyed by SECRET_KEY: set your own in production.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config.update(REDIS_HEALTH_ROUTE="/health", REDIS_ERROR_HANDLER=True)
    app.config.update(config or {})
    if not any(key in app.config for key in TOPOLOGY_KEYS) and not (
            _topology_configured_outside()):
        app.config["REDIS_URL"] = EMBEDDED_URL
    redis_ext.init_app(app)
    with app.app_context():
        # Socket.IO servers of this app reach each other through its Redis.
        socketio = SocketIO(app, client_manager=redis_ext.socketio_manager(),
                            async_mode="threading")
        redis_ext.presence.bind_socketio(socketio, identify=lambda auth: session.get("user"))

    from .views import register_views

    register_views(app, socketio)
    return app
