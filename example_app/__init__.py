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

from flask import Flask, session
from flask_socketio import SocketIO

from flask_core_redis.integrations.socketio_manager import socketio_manager
from flask_core_redis.plugins.presence import PresencePlugin

from .extensions import redis_ext
from .views import register_views

__all__ = ["create_app", "redis_ext"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # Sessions and OTP digests are keyed by SECRET_KEY: set your own in production.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config.update(REDIS_HEALTH_ROUTE="/health", REDIS_ERROR_HANDLER=True)
    app.config.update(config or {})
    redis_ext.init_app(app)
    with app.app_context():
        # One SocketIO per app, not one in extensions.py: Flask-SocketIO keeps a
        # single server per object, so a shared one would serve only the last app.
        # Socket.IO servers of this app reach each other through its Redis.
        socketio = SocketIO(app, client_manager=socketio_manager(redis_ext),
                            async_mode="threading")
        redis_ext.plugin(PresencePlugin).bind_socketio(
            socketio, identify=lambda auth: session.get("user"))

    register_views(app, socketio)
    return app
