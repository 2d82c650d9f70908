"""The ``REDIS_URL`` grammar.

Accepted forms (``[...]`` is optional)::

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db]          TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]
    redis+sentinel://[[user]:password@]h1[:p1],h2[:p2]/master-name[/db]
    rediss+sentinel://...                                 the same, over TLS
    redis+cluster://[[user]:password@]h1[:p1],h2[:p2]
    rediss+cluster://...                                  the same, over TLS
    memory://[name][/db]                                  embedded, in-process

Credentials in a URL belong to the Redis data nodes; Sentinel's own
credentials have their own keys. ``rediss`` asks for TLS to the data nodes
and, unless ``REDIS_SENTINEL_SSL`` says otherwise, to the sentinels.
Percent-encode ``@``, ``:`` and ``/`` in passwords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .settings import Mode

SCHEMES: dict[str, Mode] = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "memory": "memory",
}

DEFAULT_PORTS: dict[Mode, int] = {
    "standalone": 6379,
    "sentinel": 26379,
    "cluster": 6379,
    "memory": 0,
}


class UrlError(ValueError):
    """The URL does not follow the grammar; the message says which part."""


@dataclass(frozen=True)
class ParsedUrl:
    mode: Mode
    nodes: tuple[tuple[str, int], ...] = ()
    unix_socket: str | None = None
    memory_name: str = ""
    db: int | None = None
    username: str | None = None
    password: str | None = None
    sentinel_master: str | None = None
    ssl: bool = False


def mask_url(url: str) -> str:
    """Return ``url`` with everything between the scheme and the last ``@`` but
    the user name replaced by ``***``. The last ``@``, since a password with an
    unencoded ``/``, ``?`` or ``#`` would fool a URL parser; with or without a
    scheme, since a mistyped one must not expose the password either."""
    at = url.rfind("@")
    if at == -1:
        return url
    scheme, sep, _ = url.partition("://")
    start = len(scheme) + len(sep) if sep else 0
    user, colon, _ = url[start:at].partition(":")
    return f"{url[:start]}{user + ':***' if colon else '***'}{url[at:]}"


def parse_url(url: str) -> ParsedUrl:
    """Parse a ``REDIS_URL`` value; raise :class:`UrlError` naming what is wrong."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        accepted = ", ".join(f"{name}://" for name in SCHEMES)
        shown = f"{scheme}://" if sep else f"in {mask_url(url)!r}"
        raise UrlError(f"unknown scheme {shown}; accepted: {accepted}")
    try:
        parts = urlsplit(url)
    except ValueError:  # its message may quote the credentials
        raise UrlError("brackets are for an IPv6 host ([::1]:6379) only; percent-encode "
                       "'[' and ']' in the user name and password") from None
    netloc_end = len(scheme) + len("://") + len(parts.netloc)
    if url.rfind("@") >= netloc_end and (parts.netloc or scheme != "unix"):
        # The password holds a / ? or #: part of it would be read as the host,
        # path or query, and shown in the errors below.
        raise UrlError("the credentials end after the host part begins: percent-encode "
                       "'/', '?', '#' and '@' in the user name and password")
    mode = SCHEMES[scheme]
    username, password = _credentials(parts.netloc)
    if scheme == "unix":
        return _parse_unix(parts.path, parts.query, username, password)
    if parts.query:
        raise UrlError("query parameters are not accepted; use the configuration keys instead")
    if mode == "memory":
        return _parse_memory(parts.netloc.rpartition("@")[2], parts.path)
    nodes = parse_nodes(parts.netloc.rpartition("@")[2], DEFAULT_PORTS[mode])
    segments = [unquote(s) for s in parts.path.split("/") if s]
    common: dict[str, Any] = {"nodes": nodes, "username": username, "password": password,
                              "ssl": scheme.startswith("rediss")}
    if mode == "sentinel":
        return _parse_sentinel(segments, common)
    if mode == "cluster":
        if segments:
            raise UrlError("a cluster URL takes no path: Redis Cluster has only database 0")
        return ParsedUrl(mode="cluster", **common)
    if len(nodes) != 1:
        raise UrlError(f"{scheme}:// takes exactly one host; use {scheme}+cluster:// "
                       f"or {scheme}+sentinel:// for several")
    return ParsedUrl(mode="standalone", db=_db(segments, 0, "database number"), **common)


def parse_nodes(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """Parse ``"h1:p1,h2:p2,[::1]:p3"``; a missing port is ``default_port``."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise UrlError("the node list is empty; expected host:port[,host:port...]")
    return tuple(_node(entry, default_port) for entry in entries)


def _node(entry: str, default_port: int) -> tuple[str, int]:
    shown = mask_url(entry)  # a URL put in a node list must not show its password
    if "@" in entry:
        raise UrlError(f"{shown!r} is not a host name: a host holds no credentials "
                       "(put a URL in REDIS_URL)")
    if entry.startswith("["):  # [ipv6]:port
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UrlError(f"node {shown!r} is not [IPv6 address]:port")
        port_text = rest.removeprefix(":")
    elif entry.count(":") > 1:
        raise UrlError(f"node {shown!r}: an IPv6 address goes in brackets, as in "
                       "[::1]:6379")
    else:
        host, _, port_text = entry.partition(":")
    check_host(host, shown)
    return host, parse_port(port_text, shown) if port_text else default_port


@dataclass(frozen=True)
class ServiceAddress:
    """An address as Kubernetes writes it for a Service (``<NAME>_PORT``) and
    Docker for a legacy link: ``tcp://10.96.0.5:6379``. It holds no credentials."""

    protocol: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"


_SERVICE_ADDRESS = re.compile(
    r"(?P<protocol>tcp|udp|sctp)://(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<host>[^\s:/@\[\]?#\\]+))"
    r":(?P<port>[0-9]{1,5})", re.IGNORECASE)


def parse_service_address(text: str) -> ServiceAddress | None:
    """``text`` read as a ``<protocol>://host:port`` service address (IPv6 in
    brackets), or None when it has another form or an invalid port."""
    found = _SERVICE_ADDRESS.fullmatch(text.strip())
    if found is None or not 1 <= int(found["port"]) <= 65535:
        return None
    return ServiceAddress(found["protocol"].lower(), found["ipv6"] or found["host"],
                          int(found["port"]))


def check_host(host: str, where: str) -> str:
    """``host``, or UrlError if it is empty or holds what no host name holds
    (credentials, a scheme, a path, white space); ``where`` is shown masked."""
    if not host:
        raise UrlError(f"{mask_url(where)!r} has no host; expected host:port")
    if any(char in host for char in "@/\\?#") or any(char.isspace() for char in host):
        raise UrlError(f"{mask_url(where)!r} is not a host name: a host holds no '@', '/', "
                       "'?', '#' or white space (put a URL in REDIS_URL)")
    return host


def parse_port(text: str, where: str) -> int:
    """A port from 1 to 65535, written in ASCII digits."""
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
        raise UrlError(f"port {text!r} in {where!r} is invalid; expected an integer from "
                       "1 to 65535")
    return int(text)


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _db(segments: list[str], index: int, what: str) -> int | None:
    if len(segments) <= index:
        return None
    if len(segments) > index + 1:
        raise UrlError(f"unexpected path segment {segments[index + 1]!r} after the {what}")
    text = segments[index]
    if not re.fullmatch(r"[0-9]+", text):
        raise UrlError(f"{what} {text!r} is not a non-negative integer in ASCII digits")
    return int(text)


def _parse_sentinel(segments: list[str], common: dict[str, Any]) -> ParsedUrl:
    if not segments:
        raise UrlError("a Sentinel URL needs the master name as its path: "
                       "redis+sentinel://host:26379/mymaster[/db]")
    db = _db(segments, 1, "database number")
    return ParsedUrl(mode="sentinel", sentinel_master=segments[0], db=db,
                     **common)


def _parse_unix(path: str, query: str, username: str | None,
                password: str | None) -> ParsedUrl:
    if not path or path == "/":
        raise UrlError("a unix:// URL needs the socket path: unix:///run/redis.sock")
    params = parse_qs(query)
    unknown = set(params) - {"db"}
    if unknown:
        raise UrlError(f"unknown query parameter(s) {sorted(unknown)}; only ?db=N is accepted")
    db = _db(params["db"][-1:], 0, "database number") if "db" in params else None
    return ParsedUrl(mode="standalone", unix_socket=unquote(path), db=db,
                     username=username, password=password)


def _parse_memory(name: str, path: str) -> ParsedUrl:
    segments = [s for s in path.split("/") if s]
    return ParsedUrl(mode="memory", memory_name=name, db=_db(segments, 0, "database number"))
