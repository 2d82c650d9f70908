"""The Quart apps of the requests-per-second figure, each a view doing one
``GET``, made by uvicorn in a subprocess (``--factory``): this extension's
in the project's venv, Quart-Redis's in a venv of its own (Quart-Redis needs
redis-py < 6). Each imports its extension when called: neither venv has the
other's. The server is ``BENCH_REDIS_URL``, the connections' name
``BENCH_CLIENT_NAME``; both decode replies."""

from __future__ import annotations

import os
from typing import Any

#: The key the view reads, and the path it answers on.
KEY, PATH = "bench:async:get", "/get"
URL_VARIABLE = "BENCH_REDIS_URL"
#: CLIENT SETNAME of the app's connections, to count them in CLIENT LIST.
NAME_VARIABLE = "BENCH_CLIENT_NAME"


def core_redis() -> Any:
    """A Quart app with ``CoreRedis(app)``: ``ext.async_client.get``."""
    from quart import Quart

    from flask_core_redis import CoreRedis

    app = Quart("bench-core-redis")
    app.config.update(REDIS_URL=os.environ[URL_VARIABLE],
                      REDIS_CLIENT_NAME=os.environ[NAME_VARIABLE],
                      SECRET_KEY="bench-secret-key-" + "x" * 32)
    ext = CoreRedis(app)

    @app.get(PATH)
    async def get() -> str:
        return await ext.async_client.get(KEY) or ""

    return app


def quart_redis() -> Any:
    """A Quart app with Quart-Redis's ``RedisHandler(app)``: ``get_redis().get``."""
    from quart import Quart
    from quart_redis import RedisHandler, get_redis  # type: ignore[import-not-found]

    app = Quart("bench-quart-redis")
    app.config.update(REDIS_URI=os.environ[URL_VARIABLE],
                      SECRET_KEY="bench-secret-key-" + "x" * 32)
    RedisHandler(app, decode_responses=True, client_name=os.environ[NAME_VARIABLE])

    @app.get(PATH)
    async def get() -> str:
        return await get_redis().get(KEY) or ""

    return app
