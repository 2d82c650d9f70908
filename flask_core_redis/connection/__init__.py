"""The connection core: one client builder per topology, evented connection
classes, the retry policy, connection events, client options and the health
check."""

from .clients import AnyClient, build_client
from .events import ConnectionEvent, ConnectionEvents, log_event
from .retry import LinearBackoff

__all__ = ["AnyClient", "ConnectionEvent", "ConnectionEvents", "LinearBackoff",
           "build_client", "log_event"]
