"""The connection core: one client builder per topology, evented connection
classes, the retry policy, connection events, client options, pub/sub in
every mode, key tracking for near caches, the health check, and the watch
that follows a Sentinel master; :mod:`.redis_py` holds the redis-py
workarounds and the index of every one."""

from .async_clients import build_async_client
from .clients import AnyClient, build_client
from .events import ConnectionEvent, ConnectionEvents, log_event
from .retry import LinearBackoff
from .sentinel import MasterWatch, build_master_watch
from .tracking import KeyTracking, TrackingSink

__all__ = ["AnyClient", "ConnectionEvent", "ConnectionEvents", "KeyTracking", "LinearBackoff",
           "MasterWatch", "TrackingSink", "build_async_client", "build_client",
           "build_master_watch", "log_event"]
