"""Reading and validating one registration's settings: every key of the table
through a :class:`~.sources.ConfigSource`, then the topology (the URL when set,
else Sentinel, Cluster or HOST/PORT), then the checks that span several keys."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from .keys import KEYS, KEYS_BY_SUFFIX
from .settings import Settings
from .sources import ConfigSource, config_source, shown_value
from .urls import ServiceAddress, UrlError, mask_url, parse_service_address, parse_url

logger = logging.getLogger("flask_core_redis")


def load_settings(prefix: str, config: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None,
                  dotenv: Mapping[str, str | None] | None = None,
                  default_url: str | None = None) -> Settings:
    """Read and validate the keys for ``prefix``; raise ConfigurationError early."""
    return settings_from(config_source(prefix, config, environ, dotenv), default_url)


def settings_from(source: ConfigSource, default_url: str | None = None) -> Settings:
    """Validated settings from ``source``. ``default_url`` is the server used when
    no layer sets any key that names one (URL, HOST, PORT, SENTINELS,
    CLUSTER_NODES; a service address in PORT does not count).

    The keys that the chosen address overrides are never read, so a value
    nobody meant for this app (Kubernetes' ``REDIS_PORT=tcp://...``) cannot
    stop it from starting when ``REDIS_URL`` is set."""
    address = _address(source, default_url)
    merged = {key.field: source.get(key) for key in KEYS
              if key.field is not None and key.field not in address}
    merged.update(address)
    merged["sentinel_ssl"] = _sentinel_tls(merged)
    settings = Settings(prefix=source.prefix, **merged)
    _check_consistency(source, settings)
    return settings


def _address(source: ConfigSource, default_url: str | None) -> dict[str, Any]:
    """Mode, addresses and whatever else the address carries: the URL when
    set, else Sentinel, Cluster, HOST/PORT, else ``default_url`` when no key
    names a server at all. Only the keys the winner leaves open are read."""
    url_key = KEYS_BY_SUFFIX["URL"]
    url = source.get(url_key)
    if url is not None:
        return _from_url(url, f"{source.name(url_key)}={shown_value(url_key, url)}")
    sentinels = source.get(KEYS_BY_SUFFIX["SENTINELS"])
    cluster = source.get(KEYS_BY_SUFFIX["CLUSTER_NODES"])
    if sentinels is not None and cluster is not None:
        raise ConfigurationError(
            f"{source.prefix}_SENTINELS and {source.prefix}_CLUSTER_NODES are both set; "
            "set only one: Sentinel and Cluster are different topologies")
    if sentinels is not None:
        return {"mode": "sentinel", "nodes": sentinels}
    if cluster is not None:
        return {"mode": "cluster", "nodes": cluster}
    return _standalone(source, default_url)


def _standalone(source: ConfigSource, default_url: str | None) -> dict[str, Any]:
    """HOST and PORT, or ``default_url`` when neither is set. A PORT holding a
    service address (``tcp://10.96.0.5:6379``, which Kubernetes sets for a
    Service named like the prefix and Docker for a link of that alias) is
    injected, not chosen: a port number set in any layer (``.env`` under an
    injected environment, say) wins over it, and it names the server only
    when nothing else does."""
    host_key, port_key = KEYS_BY_SUFFIX["HOST"], KEYS_BY_SUFFIX["PORT"]
    top = source.raw(port_key)
    service = None if top is None else parse_service_address(str(top))
    port_set = source.raw(port_key, skip=_is_service_address) is not None
    host_set = source.raw(host_key) is not None
    if service is not None and (port_set or host_set or default_url is not None):
        _ignore_service_address(source, service, _why_ignored(source, port_set, host_set,
                                                              default_url))
        service = None
    if default_url is not None and not host_set and not port_set:
        return _from_url(default_url, f"CoreRedis(default_url={mask_url(default_url)!r})")
    if service is None or service.protocol != "tcp":
        if service is not None:
            _ignore_service_address(source, service,
                                    f"Redis is reached over TCP, not {service.protocol}")
        return {"mode": "standalone", "nodes": (
            (source.get(host_key), source.get(port_key, skip=_is_service_address)),)}
    logger.info("[%s] %s_PORT=%r is a service address, as Kubernetes and Docker links set "
                "it: it names the server (set %s_URL to choose another)", source.prefix,
                source.prefix, str(service), source.prefix)
    return {"mode": "standalone", "nodes": ((service.host, service.port),)}


def _is_service_address(value: Any) -> bool:
    return parse_service_address(str(value)) is not None


def _why_ignored(source: ConfigSource, port_set: bool, host_set: bool,
                 default_url: str | None) -> str:
    """Why a service address in PORT does not name the server: something the
    app chose does. Never mixed with a HOST set for another server."""
    if port_set:
        return f"{source.prefix}_PORT is also set to a port number, which wins"
    if host_set:
        return f"{source.prefix}_HOST names the server"
    return f"the server is CoreRedis(default_url={mask_url(default_url or '')!r})"


def _ignore_service_address(source: ConfigSource, service: ServiceAddress,
                            reason: str) -> None:
    logger.warning(
        "[%s] %s_PORT=%r is ignored: it is a service address, as Kubernetes and Docker "
        "links set it, and %s. %s_PORT takes a port number from 1 to 65535, or a "
        "tcp://host:port address when no other key names the server", source.prefix,
        source.prefix, str(service), reason, source.prefix)


def _sentinel_tls(merged: dict[str, Any]) -> bool:
    """TLS to the sentinels: as SENTINEL_SSL says, else as the data nodes are
    reached; False when there are no sentinels."""
    if merged["mode"] != "sentinel":
        return False
    chosen = merged["sentinel_ssl"]
    return bool(merged["ssl"] if chosen is None else chosen)


def _from_url(url: str, where: str) -> dict[str, Any]:
    """What the URL gives: the mode and address, and the db, credentials and
    master name when it holds them; the keys give what it leaves out (a
    Sentinel URL always holds the master name)."""
    try:
        parsed = parse_url(url.strip())
    except UrlError as error:
        raise ConfigurationError(f"{where} is invalid: {error}") from None
    return {name: value for name, value in vars(parsed).items() if value is not None}


#: The keys that only mean something over TLS.
TLS_SUFFIXES = ("SSL_CA_CERTS", "SSL_CERTFILE", "SSL_KEYFILE", "SSL_CERT_REQS")


def _check_tls_asked(source: ConfigSource, settings: Settings) -> None:
    """TLS asked for by a key but not in effect (a redis:// URL wins over the
    keys) would send the password in plain text: refuse it."""
    asked = ["SSL"] if source.get(KEYS_BY_SUFFIX["SSL"]) and not settings.ssl else []
    if not (settings.ssl or settings.sentinel_ssl):
        asked += [suffix for suffix in TLS_SUFFIXES
                  if source.raw(KEYS_BY_SUFFIX[suffix]) is not None]
    if asked:
        names = ", ".join(f"{source.prefix}_{suffix}" for suffix in asked)
        raise ConfigurationError(
            f"{names} asks for TLS, but the connection would be plain text: use a "
            "rediss:// URL (rediss+sentinel://, rediss+cluster://), or "
            f"{source.prefix}_SSL=true without a URL, or unset {names}")
    if source.get(KEYS_BY_SUFFIX["SENTINEL_SSL"]) and settings.mode != "sentinel":
        raise ConfigurationError(
            f"{source.prefix}_SENTINEL_SSL asks for TLS to the sentinels, but "
            f"{settings.mode} mode has none: unset it, or select Sentinel mode "
            f"(a rediss+sentinel:// URL or {source.prefix}_SENTINELS)")


def _check_consistency(source: ConfigSource, settings: Settings) -> None:
    prefix = source.prefix
    _check_tls_asked(source, settings)
    _check_pool(prefix, settings)
    if settings.mode == "cluster" and settings.db != 0:
        raise ConfigurationError(f"{prefix}_DB={settings.db} is invalid in Cluster mode: "
                                 "Redis Cluster has only database 0")
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        raise ConfigurationError(f"{prefix}_SSL_CERTFILE and {prefix}_SSL_KEYFILE go "
                                 "together: set both or neither")
    _check_tls_files(prefix, settings)


def _check_pool(prefix: str, settings: Settings) -> None:
    if settings.pool_timeout_ms is not None and settings.max_connections is None:
        raise ConfigurationError(
            f"{prefix}_POOL_TIMEOUT makes the pool wait for one of its "
            f"{prefix}_MAX_CONNECTIONS connections: set {prefix}_MAX_CONNECTIONS too")


def _check_tls_files(prefix: str, settings: Settings) -> None:
    """A TLS file that is not there fails now, by its key: at the first
    connect it would read as an unreachable server and be retried as one."""
    if not (settings.ssl or settings.sentinel_ssl):
        return
    files = {"SSL_CA_CERTS": settings.ssl_ca_certs, "SSL_CERTFILE": settings.ssl_certfile,
             "SSL_KEYFILE": settings.ssl_keyfile}
    for suffix, path in files.items():
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise ConfigurationError(
                f"{prefix}_{suffix}={path!r} is invalid: no readable file there; "
                "expected the path of a PEM file")
