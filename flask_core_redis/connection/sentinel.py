"""Redis Sentinel: the master's address comes from the sentinels, asked before
every socket a master connection opens (see connections.py)."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

from ..config import Settings
from .connections import EventedSentinelConnection, evented_class
from .events import ConnectionEvents
from .pools import pool_class, redact_pool
from .retry import build_retry


class CredentialCheckingSentinel(Sentinel):
    """A Sentinel that tells refused credentials from an outage.

    redis-py folds every sentinel's error into one MasterNotFoundError, which
    the retry policy retries like an outage. When no sentinel named a master,
    this asks them once more: if those that answer all refuse the sentinel
    credentials, the AuthenticationError is raised instead, and never retried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for client in self.sentinels:  # their reprs go into MasterNotFoundError
            redact_pool(client)

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except MasterNotFoundError:
            refusal = self._refusal()
            if refusal is not None:
                raise refusal from None
            raise

    def _refusal(self) -> AuthenticationError | None:
        refusals = []
        for sentinel in self.sentinels:
            try:
                sentinel.ping()
            except AuthenticationError as error:
                refusals.append(error)
            except (RedisError, OSError):  # down or hung: it says nothing either way
                continue
            else:
                return None  # it let us in: the master is really missing
        return refusals[0] if refusals else None


def build_sentinel_client(settings: Settings, events: ConnectionEvents,
                          kwargs: dict[str, Any]) -> Redis:
    sentinel = CredentialCheckingSentinel(list(settings.nodes), sentinel_kwargs={
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        "socket_connect_timeout": settings.connect_timeout,
        # A sentinel that hangs must not hang master discovery either.
        "socket_timeout": settings.connect_timeout,
        "decode_responses": True,
        # Each lookup asks every sentinel once; the data connection's own
        # retry policy repeats the whole lookup with its delays.
        "retry": Retry(NoBackoff(), 0),
    })
    connection_class = evented_class(SentinelManagedConnection, events,
                                     EventedSentinelConnection)
    client: Redis = sentinel.master_for(
        settings.sentinel_master, connection_class=connection_class,
        connection_pool_class=pool_class(settings, sentinel=True),
        retry=build_retry(settings.max_retries, events, settings.address),
        db=settings.db, **kwargs)
    return client
