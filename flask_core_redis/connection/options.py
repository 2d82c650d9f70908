"""Keyword options for the redis-py client (``CoreRedis(**client_options)``).

Which keywords each mode's client accepts is read from redis-py's own
signatures, so that a typo fails at start-up with the closest valid option
instead of being dropped (Cluster and the embedded server would drop it) or
failing on the first connect."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.cluster import REDIS_ALLOWED_KEYS, RedisCluster
from redis.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)

from ..config import Settings

#: Options that the extension builds from configuration, with the key that
#: sets each (None: no key; the extension builds it from several). Passing one
#: would undo the configured policy or address, or clash with it.
MANAGED_OPTIONS: dict[str, str | None] = {
    "host": "URL", "port": "URL", "path": "URL", "url": "URL", "startup_nodes": "URL",
    "db": "DB", "username": "USERNAME", "password": "PASSWORD",
    "socket_connect_timeout": "CONNECT_TIMEOUT", "socket_timeout": "SOCKET_TIMEOUT",
    "retry": "MAX_RETRIES", "retry_on_error": "MAX_RETRIES", "retry_on_timeout": "MAX_RETRIES",
    "cluster_error_retry_attempts": "MAX_RETRIES", "decode_responses": "DECODE_RESPONSES",
    "client_name": "CLIENT_NAME", "health_check_interval": "HEALTH_CHECK_INTERVAL",
    "max_connections": "MAX_CONNECTIONS",
    "ssl": "SSL", "ssl_ca_certs": "SSL_CA_CERTS", "ssl_certfile": "SSL_CERTFILE",
    "ssl_keyfile": "SSL_KEYFILE", "ssl_cert_reqs": "SSL_CERT_REQS",
    "ssl_check_hostname": "SSL_CERT_REQS",
    "connection_class": None, "connection_pool": None, "connection_pool_class": None,
}

#: CoreRedis's own keywords: offered as suggestions for a misspelt option.
OWN_KEYWORDS = ("config_prefix", "default_url")


def _keywords(*callables: Callable[..., Any]) -> frozenset[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(parameter.name for function in callables
                     for parameter in inspect.signature(function).parameters.values()
                     if parameter.kind in kinds and parameter.name != "self")


#: What a ConnectionPool reads from its keyword arguments besides its own
#: parameters (client-side caching).
POOL_KEYWORDS = frozenset({"cache", "cache_config"})
#: What Sentinel's pool reads (whether to PING a master before using it).
SENTINEL_POOL_KEYWORDS = frozenset({"check_connection"})


@functools.cache
def _pool_and_connection(connection_classes: tuple[type[AbstractConnection], ...],
                         ) -> frozenset[str]:
    """What a ConnectionPool of these connection classes accepts."""
    return POOL_KEYWORDS | _keywords(ConnectionPool.__init__, AbstractConnection.__init__,
                                     *(cls.__init__ for cls in connection_classes))


@functools.cache
def _cluster(connection_classes: tuple[type[AbstractConnection], ...]) -> frozenset[str]:
    """RedisCluster's own keywords, and the connection keywords it hands its
    nodes' pools: it drops any other without a word, and this extension's
    node connections are ``connection_classes``."""
    handed_on = frozenset(REDIS_ALLOWED_KEYS) & _pool_and_connection(connection_classes)
    return _keywords(RedisCluster.__init__) | handed_on


def _connection_classes(settings: Settings) -> tuple[type[AbstractConnection], ...]:
    """The connection classes the client of ``settings`` builds."""
    if settings.unix_socket:
        return (UnixDomainSocketConnection,)
    # Memory stands in for any server; TLS sentinels take the TLS options too.
    if settings.ssl or settings.sentinel_ssl or settings.mode == "memory":
        return (Connection, SSLConnection)
    return (Connection,)


def accepted_options(settings: Settings) -> frozenset[str]:
    """The keywords the client of ``settings``' mode accepts, managed ones aside."""
    classes = _connection_classes(settings)
    if settings.mode == "cluster":
        names = _cluster(classes)
    elif settings.mode == "sentinel":
        names = _pool_and_connection(classes) | SENTINEL_POOL_KEYWORDS
    else:
        names = _pool_and_connection(classes)
    return names - MANAGED_OPTIONS.keys() - {"connection_kwargs"}


@functools.cache
def any_mode_options() -> frozenset[str]:
    """The keywords some mode's client accepts."""
    names = (_cluster((Connection, SSLConnection)) | SENTINEL_POOL_KEYWORDS
             | _pool_and_connection((Connection, SSLConnection))
             | _pool_and_connection((UnixDomainSocketConnection,)))
    return names - MANAGED_OPTIONS.keys() - {"connection_kwargs"}


def check_options(options: Mapping[str, Any], accepted: Iterable[str], refusal: str,
                  config_prefix: str) -> None:
    """Raise TypeError for the first option that is managed or not ``accepted``,
    naming the closest valid one; ``refusal`` says who does not take it."""
    accepted = frozenset(accepted)
    for name in sorted(options):
        if name in MANAGED_OPTIONS:
            key = MANAGED_OPTIONS[name]
            instead = (f"set {config_prefix}_{key} instead" if key else
                       f"the extension builds it from {config_prefix}_* configuration")
            raise TypeError(f"CoreRedis() does not take {name!r}: {instead}")
        if name not in accepted:
            close = difflib.get_close_matches(name, [*OWN_KEYWORDS, *accepted], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"CoreRedis() got an unknown option {name!r}: {refusal}{hint}")
