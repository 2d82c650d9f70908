"""A small app on flask-core-redis. Runs on the embedded server by default;
set REDIS_URL (or REDIS_HOST, REDIS_SENTINELS, REDIS_CLUSTER_NODES) in the
environment or in a .env file to use a real Redis.

    flask --app example_app run
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from dotenv import dotenv_values, find_dotenv
from flask import Flask, jsonify, render_template_string, request
from flask_socketio import SocketIO

from flask_core_redis import CoreRedis

redis_ext = CoreRedis()

TOPOLOGY_KEYS = ("REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES")
EMBEDDED_URL = "memory://example-app"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flask-core-redis example</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
        padding: 0 1rem; color: #1f2933; }
 .card { border: 1px solid #d9e2ec; border-radius: .75rem; padding: 1.25rem 1.5rem;
         margin-bottom: 1rem; }
 .ok { color: #0f7b4a; } .down { color: #b42318; }
 dt { font-weight: 600; } dd { margin: 0 0 .5rem 0; }
 code { background: #f0f4f8; padding: .1rem .3rem; border-radius: .25rem; }
</style></head><body>
<h1>flask-core-redis</h1>
<div class="card"><p>This page has been viewed <strong>{{ visits }}</strong> times.</p></div>
<div class="card"><h2 class="{{ 'ok' if health.ok else 'down' }}">
 Redis is {{ 'up' if health.ok else 'down' }}</h2>
<dl>
 <dt>Mode</dt><dd>{{ health.mode }}</dd>
 <dt>Address</dt><dd><code>{{ health.address }}</code></dd>
 <dt>Server</dt><dd>{{ health.server_version or '-' }} ({{ health.role or '-' }})</dd>
 <dt>Latency</dt><dd>{{ health.latency_ms if health.latency_ms is not none else '-' }} ms</dd>
 {% if health.error %}<dt>Error</dt><dd>{{ health.error }}</dd>{% endif %}
</dl></div>
<p>JSON: <a href="/health">/health</a></p>
</body></html>"""


def _topology_configured_outside() -> bool:
    dotenv_path = find_dotenv(usecwd=True)
    outside = {**(dotenv_values(dotenv_path) if dotenv_path else {}), **os.environ}
    return any(outside.get(key) for key in TOPOLOGY_KEYS)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # Sessions and OTP digests are keyed by SECRET_KEY: set your own in production.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config.update(config or {})
    if not any(key in app.config for key in TOPOLOGY_KEYS) and not (
            _topology_configured_outside()):
        app.config["REDIS_URL"] = EMBEDDED_URL
    redis_ext.init_app(app)
    with app.app_context():
        # Socket.IO servers of this app reach each other through its Redis.
        socketio = SocketIO(app, client_manager=redis_ext.socketio_manager(),
                            async_mode="threading")

    @app.get("/")
    def index() -> str:
        health = redis_ext.health()
        visits = redis_ext.client.incr("example:visits") if health["ok"] else "?"
        return render_template_string(PAGE, visits=visits, health=health)

    @app.post("/api/broadcast")
    def broadcast() -> Any:
        """Send a JSON body to every Socket.IO client of every server."""
        socketio.emit("broadcast", request.get_json(silent=True) or {})
        return jsonify(sent=True)

    @app.get("/health")
    def health() -> Any:
        report = redis_ext.health()
        return jsonify(report), 200 if report["ok"] else 503

    return app
