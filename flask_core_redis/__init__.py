"""flask-core-redis: one managed Redis connection per Flask app."""

from .errors import ConfigurationError
from .events import ConnectionEvent, ConnectionEvents
from .extension import CoreRedis
from .retry import LinearBackoff
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ConnectionEvent",
    "ConnectionEvents",
    "CoreRedis",
    "LinearBackoff",
    "Settings",
    "__version__",
]
