"""flask-core-redis: one managed Redis connection per Flask app, and plugins
on top of it.

The package's layers, from the bottom up: ``config`` (keys, sources, URL
grammar, settings), ``connection`` (clients per topology, retry, events,
pub/sub, health check), ``plugin_api`` (hook specs, plugin context, plugin
manager), ``state`` (per-app state and lifecycle), ``integrations`` (one
module per third-party library: RQ, Socket.IO, Flask-Session,
Flask-Limiter, kombu, rq-dashboard), then ``routes``, ``cli`` and the
``CoreRedis`` facade. The built-in plugins in ``plugins`` depend on the
plugin API only.

The public API is what ``__all__`` lists here, in ``plugin_api`` (what
plugins import), in the built-in plugins' packages and in each integration
module."""

import importlib.metadata

from .config import Key, Settings, parsers
from .config.parsers import InvalidValue
from .connection import ConnectionEvent, ConnectionEvents, LinearBackoff
from .errors import (
    ConfigurationError,
    PluginError,
    PluginNotAvailable,
    RedisUnavailable,
    describe_error,
)
from .extension import CoreRedis
from .plugin_api import NOW_MS, LuaScript, PluginContext, hookimpl, hookspec
from .values import MAX_TTL_SECONDS, as_text, ttl_ms

#: The installed distribution's version: pyproject.toml is its one source.
__version__ = importlib.metadata.version("flask-core-redis")

__all__ = [
    "MAX_TTL_SECONDS",
    "NOW_MS",
    "ConfigurationError",
    "ConnectionEvent",
    "ConnectionEvents",
    "CoreRedis",
    "InvalidValue",
    "Key",
    "LinearBackoff",
    "LuaScript",
    "PluginContext",
    "PluginError",
    "PluginNotAvailable",
    "RedisUnavailable",
    "Settings",
    "__version__",
    "as_text",
    "describe_error",
    "hookimpl",
    "hookspec",
    "parsers",
    "ttl_ms",
]
