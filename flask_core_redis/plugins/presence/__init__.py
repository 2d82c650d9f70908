"""The built-in ``presence`` plugin: who is online, per user and connection."""

from .errors import TooManyConnections
from .store import CONFIG_KEYS, PresencePlugin

__all__ = ["CONFIG_KEYS", "PresencePlugin", "TooManyConnections"]
