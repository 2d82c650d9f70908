"""The app's Redis as a kombu broker (Celery's transport), in kombu's own URL
grammar: ``redis://`` / ``rediss://`` for one server, ``sentinel://`` plus the
``master_name`` and ``sentinel_kwargs`` transport options behind Sentinel, and
kombu's ``ssl`` options wherever the data nodes are TLS. kombu cannot use Redis
Cluster, nor the in-process ``memory://`` server that a worker process cannot
reach: both are refused.

:func:`kombu_broker` needs nothing installed; :meth:`KombuBroker.connection`
needs kombu (``pip install 'celery[redis]'``, or ``'kombu[redis]'`` alone).

kombu reads ``redis+sentinel://`` and an unknown scheme differently from this
project; handed one, it can end up on ``localhost:6379``. The URL carries the
password because kombu reads it from there: :class:`KombuBroker` masks it in
its ``repr``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..config import Settings
from ..config.settings import MASK
from ..connection.tls import ssl_kwargs
from ..errors import ConfigurationError
from ..state import Registration, current_state
from ._missing import missing_library

if TYPE_CHECKING:
    from kombu.connection import Connection

__all__ = ["KombuBroker", "kombu_broker"]


@dataclass(frozen=True, repr=False)
class KombuBroker:
    """A kombu connection's URL, transport options and TLS options."""

    #: kombu's broker URL, credentials included (masked in the ``repr``).
    url: str
    #: kombu's transport options: behind Sentinel, ``master_name`` and the
    #: sentinels' own ``sentinel_kwargs``.
    transport_options: dict[str, Any] = field(default_factory=dict)
    #: kombu's ``ssl`` options when the data nodes are TLS, else None.
    ssl: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (f"KombuBroker(url={_masked_url(self.url)!r}, "
                f"transport_options={_masked_options(self.transport_options)!r}, "
                f"ssl={self.ssl!r})")

    __str__ = __repr__

    def celery_config(self) -> dict[str, Any]:
        """Celery's broker settings: ``celery.conf.update(broker.celery_config())``."""
        config: dict[str, Any] = {"broker_url": self.url,
                                  "broker_transport_options": dict(self.transport_options)}
        if self.ssl is not None:
            config["broker_use_ssl"] = dict(self.ssl)
        return config

    def connection(self) -> Connection:
        """A ``kombu.Connection`` on this broker (not yet connected)."""
        try:
            from kombu.connection import Connection
        except ImportError as error:
            raise missing_library(__name__, "kombu", "'kombu[redis]'") from error
        return Connection(self.url, transport_options=dict(self.transport_options),
                          ssl=self.ssl if self.ssl is not None else False)


def kombu_broker(ext: Registration) -> KombuBroker:
    """The current app's Redis as a kombu broker, for ``ext`` (a
    :class:`~flask_core_redis.CoreRedis`): standalone and Sentinel modes;
    Cluster, ``memory://`` and unix sockets are refused with a
    ConfigurationError."""
    settings = current_state(ext.config_prefix).settings
    if settings.mode in ("cluster", "memory"):
        why = ("kombu's Redis transport does not support Redis Cluster"
               if settings.mode == "cluster" else
               "memory:// lives in this process, and a worker is another process")
        raise ConfigurationError(
            f"{settings.prefix}_* selects {settings.mode} mode, which kombu (Celery's broker) "
            f"cannot use: {why}. Give the broker a standalone or Sentinel Redis, e.g. a "
            "second CoreRedis(config_prefix='BROKER_REDIS') with BROKER_REDIS_URL.")
    if settings.unix_socket:
        raise ConfigurationError(
            f"{settings.prefix}_URL is a unix socket; kombu_broker() builds TCP URLs only "
            "(redis://, rediss://, sentinel://).")
    if settings.mode == "sentinel":
        return _sentinel_broker(settings)
    (host, port), = settings.nodes
    scheme = "rediss" if settings.ssl else "redis"
    url = f"{scheme}://{_credentials(settings)}{_host(host)}:{port}/{settings.db}"
    return KombuBroker(url, ssl=_ssl_options(settings) if settings.ssl else None)


def _sentinel_broker(settings: Settings) -> KombuBroker:
    # Each sentinel's URL carries the data nodes' credentials and the db:
    # kombu takes them from whichever URL it connects through. The sentinels'
    # own credentials and TLS go in sentinel_kwargs; the data nodes' TLS in
    # kombu's ssl options, as for one server.
    url = ";".join(f"sentinel://{_credentials(settings)}{_host(host)}:{port}/{settings.db}"
                   for host, port in settings.nodes)
    options: dict[str, Any] = {"master_name": settings.sentinel_master}
    sentinel_kwargs: dict[str, Any] = {name: value for name, value in (
        ("username", settings.sentinel_username),
        ("password", settings.sentinel_password)) if value is not None}
    if settings.sentinel_ssl:
        sentinel_kwargs.update({"ssl": True, **_ssl_options(settings)})
    if sentinel_kwargs:
        options["sentinel_kwargs"] = sentinel_kwargs
    return KombuBroker(url, options, ssl=_ssl_options(settings) if settings.ssl else None)


def _credentials(settings: Settings) -> str:
    if settings.password is None:
        return f"{quote(settings.username, safe='')}@" if settings.username else ""
    return f"{quote(settings.username or '', safe='')}:{quote(settings.password, safe='')}@"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _ssl_options(settings: Settings) -> dict[str, Any]:
    """kombu's ``ssl`` (Celery's ``broker_use_ssl``): without them kombu
    would connect to ``rediss://`` without checking the certificate."""
    return {name: value for name, value in ssl_kwargs(settings).items() if value is not None}


def _masked_url(url: str) -> str:
    return re.sub(r"(://[^:@/;]*):[^@;]*@", rf"\1:{MASK}@", url)


def _masked_options(options: dict[str, Any]) -> dict[str, Any]:
    sentinel = options.get("sentinel_kwargs")
    if not sentinel or "password" not in sentinel:
        return options
    return {**options, "sentinel_kwargs": {**sentinel, "password": MASK}}
