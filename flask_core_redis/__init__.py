"""flask-core-redis: one managed Redis connection per Flask app."""

from .errors import ConfigurationError
from .events import ConnectionEvent, ConnectionEvents
from .extension import CoreRedis
from .hookspecs import hookimpl, hookspec
from .plugin_context import PluginContext
from .retry import LinearBackoff
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ConnectionEvent",
    "ConnectionEvents",
    "CoreRedis",
    "LinearBackoff",
    "PluginContext",
    "Settings",
    "__version__",
    "hookimpl",
    "hookspec",
]
