"""The Quart demo's extension object, made once and bound to each app by
``create_app``."""

from __future__ import annotations

from flask_core_redis import CoreRedis

# The embedded server unless the configuration (app.config, the environment or
# a .env file) names a Redis: REDIS_URL, REDIS_HOST, REDIS_SENTINELS ...
redis_ext = CoreRedis(default_url="memory://example-quart")
