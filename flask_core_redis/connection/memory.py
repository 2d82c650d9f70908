"""The embedded server: ``memory://name`` is an in-process Redis (fakeredis,
with Lua) shared by every client built from the same name in this process."""

from __future__ import annotations

import threading
from typing import Any

from redis import Redis

from ..config import Settings
from ..errors import ConfigurationError
from .events import ConnectionEvents

_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def build_memory_client(settings: Settings, events: ConnectionEvents,
                        kwargs: dict[str, Any], client_class: Any = None) -> Redis:
    """A client of the in-process server (fakeredis, with Lua) shared by every
    client built from the same ``memory://name`` in this process: a
    ``fakeredis.FakeRedis``, or a ``client_class`` of fakeredis's."""
    server = memory_server(settings)
    if client_class is None:
        import fakeredis

        client_class = fakeredis.FakeRedis
    # Credentials are left out: the embedded server has no users to check.
    wanted = ("decode_responses", "client_name")
    client: Redis = client_class(server=server, db=settings.db,
                                 **{k: kwargs[k] for k in wanted if k in kwargs})
    return client


def memory_server(settings: Settings) -> Any:
    """The in-process server ``memory://name`` names, made on first use,
    for blocking and asyncio clients alike."""
    try:
        import fakeredis
    except ImportError:
        raise ConfigurationError(
            f"{settings.prefix}_URL=memory://... needs the embedded server: "
            "pip install 'flask-core-redis[memory]'") from None
    with _memory_lock:
        server = _memory_servers.get(settings.memory_name)
        if server is None:
            server = _memory_servers[settings.memory_name] = fakeredis.FakeServer()
    return server
