"""Redis Sentinel: the master's address comes from the sentinels, asked before
every socket a master connection opens (see connections.py)."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from ..config import Settings
from ..errors import describe_error
from .connections import EventedSentinelConnection, evented_class
from .events import ConnectionEvents
from .pools import pool_class, redact_pool
from .retry import build_retry
from .tls import ssl_kwargs


class CredentialCheckingSentinel(Sentinel):
    """A Sentinel that tells refused credentials from an outage, and says what
    each sentinel answered.

    redis-py folds every sentinel's error into one MasterNotFoundError, which
    the retry policy retries like an outage, and whose message holds the
    sentinels' connection reprs, file paths of a TLS key included. When no
    sentinel named a master, this asks them once more: if those that answer all
    refuse the sentinel credentials, the AuthenticationError is raised instead,
    and never retried; else a MasterNotFoundError that gives each failing
    sentinel's address and error (a refused TLS certificate, say)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for client in self.sentinels:  # their reprs go into MasterNotFoundError
            redact_pool(client)

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except MasterNotFoundError:
            answered, refusals, problems = self._ask_each()
            if refusals and not answered:
                raise refusals[0] from None
            found = f": {'; '.join(problems)}" if problems else ""
            raise MasterNotFoundError(f"No master found for {service_name!r}{found}") from None

    def _ask_each(self) -> tuple[bool, list[AuthenticationError], list[str]]:
        """Whether a sentinel let us in; the refusals; every other failure."""
        answered, refusals, problems = False, [], []
        for sentinel in self.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            try:
                sentinel.ping()
            except AuthenticationError as error:
                refusals.append(error)
            except (RedisError, OSError) as error:  # down, hung or refused by TLS
                problems.append(f"{kwargs.get('host')}:{kwargs.get('port')}: "
                                f"{describe_error(error)}")
            else:
                answered = True  # it let us in: the master is really missing
        return answered, refusals, problems


def build_sentinel_client(settings: Settings, events: ConnectionEvents,
                          kwargs: dict[str, Any]) -> Redis:
    # The TLS options passed to CoreRedis() (ssl_password, ssl_ciphers...) go
    # wherever TLS is spoken: to the sentinels, the data nodes, or both.
    tls_options = {name: kwargs.pop(name) for name in list(kwargs) if name.startswith("ssl_")}
    sentinel = CredentialCheckingSentinel(
        list(settings.nodes), sentinel_kwargs=_sentinel_kwargs(settings, tls_options))
    base = SentinelManagedConnection
    if settings.ssl:
        base = SentinelManagedSSLConnection
        kwargs.update(ssl_kwargs(settings), **tls_options)
    connection_class = evented_class(base, events, EventedSentinelConnection)
    client: Redis = sentinel.master_for(
        settings.sentinel_master, connection_class=connection_class,
        connection_pool_class=pool_class(settings, sentinel=True),
        retry=build_retry(settings, events),
        db=settings.db, **kwargs)
    return client


def _sentinel_kwargs(settings: Settings, tls_options: dict[str, Any]) -> dict[str, Any]:
    """How to reach the sentinels themselves: their own credentials, and TLS
    as ``sentinel_ssl`` says, whatever the data nodes use."""
    tls = ({"ssl": True, **ssl_kwargs(settings), **tls_options} if settings.sentinel_ssl
           else {})
    return {
        "username": settings.sentinel_username,
        "password": settings.sentinel_password,
        "socket_connect_timeout": settings.connect_timeout,
        # A sentinel that hangs must not hang master discovery either.
        "socket_timeout": settings.connect_timeout,
        "decode_responses": True,
        # Each lookup asks every sentinel once; the data connection's own
        # retry policy repeats the whole lookup with its delays.
        "retry": Retry(NoBackoff(), 0),
        **tls,
    }
