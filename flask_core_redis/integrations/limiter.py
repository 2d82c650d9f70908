"""Flask-Limiter (limits) storage on the app's Redis:
``Limiter(key_func, app=app, **limiter_storage(ext))``.

Needs Flask-Limiter with limits' Redis storage: ``pip install
'Flask-Limiter[redis]'``. This module imports neither: it only builds their
arguments.

On one server, behind Sentinel and in memory mode, limits' Redis storage runs
on the pool of the app's bytes client: its settings, retries and connection
events. limits cannot take a Cluster client (it asks for a
``connection_pool``, which a ``RedisCluster`` has not), so on Cluster it
builds its own ``RedisCluster`` from limits' ``redis+cluster://`` storage,
given the app's nodes, credentials, timeouts, client name and connection
events. Either way its keys start with ``KEY_PREFIX`` and ``LIMITS``."""

from __future__ import annotations

from typing import Any, cast

from redis import Redis
from redis.credentials import UsernamePasswordCredentialProvider

from ..connection.clients import cluster_options
from ..state import RedisState, Registration, current_state

__all__ = ["limiter_storage"]

#: What limits' keys start with, after the app's ``KEY_PREFIX``.
KEY_PREFIX = "LIMITS"


def limiter_storage(ext: Registration) -> dict[str, Any]:
    """``storage_uri`` and ``storage_options`` for ``Limiter(...)`` (or
    limits' ``storage_from_string``) on the current app's Redis, for ``ext``
    (a :class:`~flask_core_redis.CoreRedis`). Its keys start with
    ``KEY_PREFIX`` then ``LIMITS``."""
    state = current_state(ext.config_prefix)
    settings = state.settings
    options: dict[str, Any] = {"key_prefix": settings.key_prefix + KEY_PREFIX}
    if settings.mode == "cluster":
        hosts = ",".join(f"{host}:{port}" for host, port in settings.nodes)
        return {"storage_uri": f"redis+cluster://{hosts}",
                "storage_options": {**_cluster_options(state), **options}}
    pool = cast(Redis, state.decoding_client(False)).connection_pool  # not Cluster: above
    # limits ignores the URI when given a pool.
    return {"storage_uri": "redis://", "storage_options": {"connection_pool": pool, **options}}


def _cluster_options(state: RedisState) -> dict[str, Any]:
    settings = state.settings
    options = cluster_options(settings, state.events,
                              {**state.options, "decode_responses": False})
    options.pop("startup_nodes")  # limits makes them from the URI's hosts
    username, password = options.pop("username"), options.pop("password")
    if password is not None:
        # Flask-Limiter's `flask limiter config` prints the storage options.
        options["credential_provider"] = UsernamePasswordCredentialProvider(
            username, password)
    if options.get("ssl_password") is not None:
        options["ssl_password"] = _Passphrase(options["ssl_password"])
    return options


class _Passphrase:
    """An encrypted key's passphrase that prints as ``***``: Python's ssl takes
    a callable that returns it, and the storage options are printed."""

    def __init__(self, passphrase: str | bytes) -> None:
        self._passphrase = passphrase

    def __call__(self) -> str | bytes:
        return self._passphrase

    def __repr__(self) -> str:
        return "***"
