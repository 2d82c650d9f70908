"""Every configuration key of the core, with its default and its meaning, in
one table: the one home of every default. The README's table is generated
from it (:func:`key_table`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import parsers
from .parsers import InvalidValue, Parser
from .urls import DEFAULT_PORTS, UrlError, check_host, parse_nodes, parse_port


@dataclass(frozen=True)
class Key:
    """One configuration key: its name after the prefix (``suffix``), default,
    parser and one line of documentation. ``secret`` keys are shown as ``***``
    in every error message.

    Plugins declare their own keys the same way and read them with
    :meth:`PluginContext.setting <flask_core_redis.PluginContext.setting>`."""

    suffix: str
    default: Any
    parse: Parser
    doc: str
    secret: bool = False
    #: The Settings field it fills: its own name in lower case by default;
    #: None for the keys that select the topology, which the loader reads.
    setting: str | None = ""

    @property
    def field(self) -> str | None:
        return self.suffix.lower() if self.setting == "" else self.setting


def _port(value: Any) -> int:
    try:
        return parse_port(str(value).strip(), "the port")
    except UrlError:
        raise InvalidValue("expected an integer from 1 to 65535, in ASCII digits") from None


def _host(value: Any) -> str:
    """A host name or address; an IPv6 address with or without brackets."""
    text = str(value).strip()
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return check_host(host, "the host")
    except UrlError:
        raise InvalidValue("expected a host name or address, without credentials, scheme, "
                           "path or white space (put a URL in the URL key)") from None


def _node_list(default_port: int) -> Parser:
    """Nodes as ``"h1:p1,h2:p2"``, a list of such strings, or a list of
    ``(host, port)`` pairs (the form Flask-Caching documents)."""
    def parse(value: Any) -> tuple[tuple[str, int], ...]:
        items = value if isinstance(value, list | tuple) else [value]
        try:
            nodes = tuple(node for number, item in enumerate(items, start=1)
                          for node in _nodes_of(item, number, default_port))
        except UrlError as error:
            raise InvalidValue(str(error)) from None
        if not nodes:
            raise InvalidValue("the node list is empty; expected host:port[,host:port...]")
        return nodes

    return parse


def _nodes_of(item: Any, number: int, default_port: int) -> tuple[tuple[str, int], ...]:
    """The nodes of one item of a list; errors never quote a pair's parts but
    the host, masked (a password may sit anywhere in a mistaken pair)."""
    if isinstance(item, str):
        return parse_nodes(item, default_port)
    if not isinstance(item, list | tuple) or len(item) != 2:
        raise UrlError(f"item {number} is not a (host, port) pair nor a 'host:port' string")
    host, port = (str(part).strip() for part in item)
    try:
        port_number = parse_port(port, "")
    except UrlError:
        raise UrlError(f"item {number}: the port is not an integer from 1 to 65535") from None
    return ((check_host(host, host), port_number),)


def _name_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple | set) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not all(name.replace("_", "").replace("-", "").isalnum() for name in names):
        raise InvalidValue("expected plugin names, as a list or separated by commas")
    return names


def _key_prefix(value: Any) -> str:
    text = str(value)
    if any(char in text for char in "{}") or any(char.isspace() for char in text):
        raise InvalidValue("expected a prefix without spaces or braces (braces are hash tags)")
    return text


def _route(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith("/"):
        raise InvalidValue("expected a URL path starting with '/', e.g. /healthz/redis")
    return text


_milliseconds = parsers.number(0, expected="expected a positive number of milliseconds")

KEYS: tuple[Key, ...] = (
    Key("URL", None, parsers.text, "Connection URL; wins over every key below when set "
        "(see the URL grammar).", setting=None),
    Key("HOST", "redis", _host, "Host of a standalone server.", setting=None),
    Key("PORT", DEFAULT_PORTS["standalone"], _port, "Port of a standalone server.",
        setting=None),
    Key("DB", 0, parsers.integer(0), "Database number (standalone and Sentinel)."),
    Key("USERNAME", None, parsers.text, "ACL user name for the data nodes."),
    Key("PASSWORD", None, parsers.text, "Password for the data nodes.", secret=True),
    Key("SENTINELS", None, _node_list(DEFAULT_PORTS["sentinel"]), "Sentinels as "
        "`h1:26379,h2:26379`; selects Sentinel mode.", setting=None),
    Key("SENTINEL_MASTER", "mymaster", parsers.text,
        "Name of the master the sentinels monitor."),
    Key("SENTINEL_USERNAME", None, parsers.text,
        "ACL user name for the sentinels themselves."),
    Key("SENTINEL_PASSWORD", None, parsers.text, "Password for the sentinels themselves.",
        secret=True),
    Key("SENTINEL_SSL", None, parsers.boolean, "Use TLS to the sentinels themselves; "
        "unset follows the data nodes (`REDIS_SSL` or the URL's scheme). The `SSL_*` "
        "files below serve both."),
    Key("CLUSTER_NODES", None, _node_list(DEFAULT_PORTS["cluster"]), "Cluster startup "
        "nodes as `h1:7000,h2:7001`; selects Cluster mode.", setting=None),
    Key("SSL", False, parsers.boolean, "Use TLS to the data nodes, in every mode but "
        "a unix socket (a `rediss://`, `rediss+sentinel://` or `rediss+cluster://` URL "
        "implies it)."),
    Key("SSL_CA_CERTS", None, parsers.text, "CA bundle that verifies the server "
        "certificate."),
    Key("SSL_CERTFILE", None, parsers.text, "Client certificate, for servers that "
        "require one."),
    Key("SSL_KEYFILE", None, parsers.text, "Private key of the client certificate."),
    Key("SSL_CERT_REQS", "required", parsers.choice("required", "optional", "none"),
        "Server certificate check: `required`, `optional` or `none`."),
    Key("CONNECT_TIMEOUT", 10000, _milliseconds, "Bound on one connect attempt, TCP "
        "connect and handshake (on Sentinel, the master's lookup too), in ms.",
        setting="connect_timeout_ms"),
    Key("SOCKET_TIMEOUT", None, _milliseconds, "Bound on waiting for a reply, in ms; "
        "unset waits as long as the command takes.", setting="socket_timeout_ms"),
    Key("MAX_RETRIES", 3, parsers.integer(0), "Retries of a failed command or connect "
        "attempt, with a delay of min(n x 50 ms, 2000 ms) before retry n."),
    Key("RETRY_DEADLINE", None, _milliseconds, "Bound retries by time instead: a failed "
        "command or connect is retried, with the same delays, as long as the next try "
        "starts within this many ms of the first; MAX_RETRIES then counts only for "
        "redis-py's Cluster pipeline loop.", setting="retry_deadline_ms"),
    Key("DECODE_RESPONSES", True, parsers.boolean, "Return `str` instead of `bytes`."),
    Key("CLIENT_NAME", None, parsers.text, "Name set with CLIENT SETNAME on every "
        "connection."),
    Key("HEALTH_CHECK_INTERVAL", 0, parsers.integer(0), "Seconds of idleness after which "
        "a pooled connection is PINGed before use; 0 turns it off (`duplicate()` uses 30)."),
    Key("MAX_CONNECTIONS", None, parsers.integer(1), "Most connections a client's pool "
        "opens (per node in Cluster; no effect in memory mode); unset: no limit. A "
        "command that finds them all in use fails with MaxConnectionsError, or waits "
        "when POOL_TIMEOUT is set."),
    Key("POOL_TIMEOUT", None, _milliseconds, "Makes the pool wait: a command that finds "
        "all MAX_CONNECTIONS in use waits up to this many ms for a free one, then "
        "fails with MaxConnectionsError. Needs MAX_CONNECTIONS.",
        setting="pool_timeout_ms"),
    Key("KEY_PREFIX", "", _key_prefix, "Prepended to every key a plugin writes, so "
        "several apps can share one Redis (e.g. `shop:`)."),
    Key("PLUGINS", None, _name_list, "Plugins to enable, in the order their hooks run "
        "(list, or names separated by commas); unset enables every installed plugin, "
        "in name order."),
    Key("DISABLED_PLUGINS", (), _name_list, "Plugins to leave out, e.g. `otp`."),
    Key("HEALTH_ROUTE", None, _route, "Serve `ext.health()` as JSON at this path "
        "(e.g. `/healthz/redis`): 200 when ok, 503 when not."),
    Key("ERROR_HANDLER", False, parsers.boolean, "Turn a Redis connection error or "
        "timeout escaping a view into a 503 JSON response instead of a 500."),
    Key("MEMORY_WARNING_RATIO", 0.9, parsers.number(0, 1, "expected a number above 0 "
        "and at most 1, e.g. 0.9"), "`health()` warns when used memory reaches this "
        "share of `maxmemory`."),
)

KEYS_BY_SUFFIX = {key.suffix: key for key in KEYS}

#: The keys that name a server; when none is set anywhere, ``default_url`` applies.
TOPOLOGY_SUFFIXES = ("URL", "HOST", "PORT", "SENTINELS", "CLUSTER_NODES")


def key_table(keys: tuple[Key, ...] = KEYS, prefix: str = "REDIS") -> str:
    """A configuration table as Markdown, as the README shows it."""
    rows = ["| Key | Default | Meaning |", "| --- | --- | --- |"]
    for key in keys:
        default = "" if key.default in (None, "", ()) else f"`{_plain(key.default)}`"
        rows.append(f"| `{prefix}_{key.suffix}` | {default} | {key.doc} |")
    return "\n".join(rows)


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
