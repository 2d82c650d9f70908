"""The Quart demo: phone login with one-time codes and who is online, live
over Socket.IO (python-socketio's ``AsyncServer``), on flask-core-redis's
async client, the plugins' coroutine forms (``aissue``, ``acheck``,
``aonline_users``), the presence binding of the ``AsyncServer``
(``bind_socketio``) and its client manager on the app's Redis
(``async_socketio_manager``).

Runs on the embedded server by default; set REDIS_URL (or REDIS_HOST,
REDIS_SENTINELS, REDIS_CLUSTER_NODES) in the environment or in a .env file to
use a real Redis. Serve it with an ASGI server:

    uvicorn --factory example_quart:create_app

With several workers on a real Redis (the embedded server is one per
process), who is online and the ``presence`` events are shared through it:
an event reaches the sockets of every worker. Give them one SECRET_KEY, or a
session signed by one worker is a visitor's on the others. Only the
development SMS outbox lives in the process: serve it with one worker, or
give ``create_app`` a sender of your own.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from quart import Quart

from .extensions import redis_ext
from .live import serve_socket_io
from .sms import DevOutbox, SendSms
from .views import register_views

__all__ = ["create_app", "redis_ext"]


def create_app(config: dict[str, Any] | None = None, *,
               send_sms: SendSms | None = None) -> Quart:
    """The app, with a Socket.IO server in front of it while it serves
    (``app.asgi_app``) and Redis through ``redis_ext``. Without
    ``send_sms``, codes go to a development outbox that the login page
    shows."""
    app = Quart(__name__)
    # Sessions and OTP digests are keyed by SECRET_KEY: set your own in production.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config.update(REDIS_HEALTH_ROUTE="/health", REDIS_ERROR_HANDLER=True)
    app.config.update(config or {})
    redis_ext.init_app(app)

    serve_socket_io(app)
    outbox = None
    if send_sms is None:
        outbox = DevOutbox()
        send_sms = outbox.send
    register_views(app, send_sms, outbox)
    return app
