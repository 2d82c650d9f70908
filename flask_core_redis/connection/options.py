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

#: Options that the extension derives from configuration; passing them
#: would silently undo the configured policy or address.
MANAGED_OPTIONS = frozenset({
    "retry", "connection_class", "connection_pool", "host", "port", "path",
    "startup_nodes", "url",
})

#: CoreRedis's own keywords: offered as suggestions for a misspelt option.
OWN_KEYWORDS = ("config_prefix", "default_url")


def _keywords(*callables: Callable[..., Any]) -> frozenset[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(parameter.name for function in callables
                     for parameter in inspect.signature(function).parameters.values()
                     if parameter.kind in kinds and parameter.name != "self")


@functools.cache
def _pool_and_connection(*connection_classes: type[AbstractConnection]) -> frozenset[str]:
    """What a ConnectionPool of these connection classes passes on and accepts."""
    return _keywords(ConnectionPool.__init__, AbstractConnection.__init__,
                     *(cls.__init__ for cls in connection_classes))


def accepted_options(settings: Settings) -> frozenset[str]:
    """The keywords the client of ``settings``' mode accepts, managed ones aside."""
    if settings.mode == "cluster":
        # RedisCluster drops any other keyword without a word.
        names = _keywords(RedisCluster.__init__) | frozenset(REDIS_ALLOWED_KEYS)
    elif settings.unix_socket:
        names = _pool_and_connection(UnixDomainSocketConnection)
    elif settings.ssl or settings.mode == "memory":  # memory stands in for any server
        names = _pool_and_connection(Connection, SSLConnection)
    else:  # a standalone TCP server, or the master behind Sentinel
        names = _pool_and_connection(Connection)
    return names - MANAGED_OPTIONS - {"connection_kwargs"}


@functools.cache
def any_mode_options() -> frozenset[str]:
    """The keywords some mode's client accepts."""
    return (_keywords(RedisCluster.__init__) | frozenset(REDIS_ALLOWED_KEYS)
            | _pool_and_connection(Connection, SSLConnection)
            | _pool_and_connection(UnixDomainSocketConnection)) - MANAGED_OPTIONS - {
                "connection_kwargs"}


def check_options(options: Mapping[str, Any], accepted: Iterable[str], refusal: str,
                  config_prefix: str) -> None:
    """Raise TypeError for the first option that is managed or not ``accepted``,
    naming the closest valid one; ``refusal`` says who does not take it."""
    accepted = frozenset(accepted)
    for name in sorted(options):
        if name in MANAGED_OPTIONS:
            raise TypeError(
                f"CoreRedis() does not take {name!r}: the extension builds it from "
                f"{config_prefix}_* configuration (see the README)")
        if name not in accepted:
            close = difflib.get_close_matches(name, [*OWN_KEYWORDS, *accepted], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"CoreRedis() got an unknown option {name!r}: {refusal}{hint}")
