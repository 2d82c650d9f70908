"""Every configuration key of the core, with its default and its meaning, in
one table: the one home of every default. The configuration reference in the
docs is generated from it (:func:`key_table`), so each key's one line of
documentation is what users read."""

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

    #: The name after the prefix: ``"URL"`` is read as ``REDIS_URL``.
    suffix: str
    #: The value when no layer sets the key (empty counts as unset).
    default: Any
    #: Turns a raw value into the setting, or raises
    #: :class:`~flask_core_redis.InvalidValue`.
    parse: Parser
    #: One line for the configuration reference, in Markdown.
    doc: str
    #: Shown as ``***`` in every error message and repr.
    secret: bool = False
    #: The Settings field it fills: its own name in lower case by default;
    #: None for the keys that select the topology, which the loader reads.
    setting: str | None = ""

    @property
    def field(self) -> str | None:
        """The :class:`~flask_core_redis.Settings` field this key fills,
        or None for the keys that select the topology."""
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
    names = parsers.names(value)
    if not all(name.replace("_", "").replace("-", "").isalnum() for name in names):
        raise InvalidValue("expected plugin names, as a list or separated by commas")
    return names


#: The redis-py metric groups ``OTEL_REDIS_PY_METRICS`` accepts:
#: ``RESILIENCY`` (errors and retries), ``CONNECTION_ADVANCED`` (a waiting
#: pool's waits, timeouts, connections closed), ``CONNECTION_BASIC``
#: (connection counts and create times, recorded at every checkout and
#: release) and ``COMMAND`` (each command's duration). Pub/sub, streams and
#: the client-side cache are left out: their attributes may name channels
#: and streams.
REDIS_PY_METRIC_GROUPS = ("RESILIENCY", "CONNECTION_ADVANCED", "CONNECTION_BASIC", "COMMAND")


def _metric_groups(value: Any) -> tuple[str, ...]:
    names = tuple(name.upper() for name in parsers.names(value))
    unknown = [name for name in names if name not in REDIS_PY_METRIC_GROUPS]
    if unknown:
        raise InvalidValue("expected redis-py metric groups among "
                           f"{', '.join(REDIS_PY_METRIC_GROUPS)}"
                           f" (a list, or separated by commas); {len(unknown)} unknown")
    return tuple(dict.fromkeys(names))


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
    Key("URL", None, parsers.text, "Connection URL (see the URL grammar). When set, it "
        "alone names the server: HOST, PORT, SENTINELS and CLUSTER_NODES are not read, "
        "nor DB, USERNAME, PASSWORD and SENTINEL_MASTER when the URL holds them.",
        setting=None),
    Key("HOST", "redis", _host, "Host name or address of a standalone server (IPv6 with "
        "or without brackets); read when no URL, SENTINELS or CLUSTER_NODES is set.",
        setting=None),
    Key("PORT", DEFAULT_PORTS["standalone"], _port, "Port of the standalone server, read "
        "as HOST is. A `tcp://host:port` value (Kubernetes sets one for a Service named "
        "`redis`, Docker for a link) names the server when nothing else does (no HOST, no "
        "port number in another layer, no `default_url`), and is ignored with a warning "
        "otherwise.", setting=None),
    Key("DB", 0, parsers.integer(0), "Database number; Redis Cluster has only database 0."),
    Key("USERNAME", None, parsers.text, "ACL user name for the data nodes; unset: the "
        "`default` user."),
    Key("PASSWORD", None, parsers.text, "Password for the data nodes (of USERNAME, or of "
        "the `default` user); unset: no AUTH.", secret=True),
    Key("SENTINELS", None, _node_list(DEFAULT_PORTS["sentinel"]), "Sentinels as "
        "`h1:26379,h2:26379` (port 26379 when left out); selects Sentinel mode when no "
        "URL is set.", setting=None),
    Key("SENTINEL_MASTER", "mymaster", parsers.text, "Name of the master the sentinels "
        "monitor, read with SENTINELS. A Sentinel URL names the master in its path "
        "(`redis+sentinel://h:26379/mymaster/0`) and this key is then not read."),
    Key("SENTINEL_USERNAME", None, parsers.text, "ACL user name for the sentinels "
        "themselves (the data nodes use USERNAME)."),
    Key("SENTINEL_PASSWORD", None, parsers.text, "Password for the sentinels themselves; "
        "unset: the sentinels are asked without AUTH.", secret=True),
    Key("SENTINEL_SSL", None, parsers.boolean, "TLS to the sentinels (Sentinel mode "
        "only); unset: as to the data nodes (`REDIS_SSL` or the URL's scheme). The "
        "`SSL_*` files serve both."),
    Key("CLUSTER_NODES", None, _node_list(DEFAULT_PORTS["cluster"]), "Cluster startup "
        "nodes as `h1:7000,h2:7001` (port 6379 when left out), from which the others are "
        "discovered; selects Cluster mode when no URL is set.", setting=None),
    Key("SSL", False, parsers.boolean, "TLS to the data nodes, when no URL is set. "
        "With a URL its scheme decides (`rediss://`, `rediss+sentinel://`, "
        "`rediss+cluster://`), and `true` beside a plain-text URL is refused."),
    Key("SSL_CA_CERTS", None, parsers.text, "CA bundle (PEM) trusted to verify the "
        "server certificate, besides the system's CAs; unset: the system's CAs only."),
    Key("SSL_CERTFILE", None, parsers.text, "Client certificate (PEM), for servers that "
        "require one; set with SSL_KEYFILE."),
    Key("SSL_KEYFILE", None, parsers.text, "Private key (PEM) of the client certificate; "
        "set with SSL_CERTFILE."),
    Key("SSL_CERT_REQS", "required", parsers.choice("required", "optional", "none"),
        "Server certificate check: `required` (the chain and the host name), `optional` "
        "(the chain only) or `none` (no check)."),
    Key("CONNECT_TIMEOUT", 10000, _milliseconds, "Bound on one connect attempt, in ms: "
        "TCP connect and handshake together (on Sentinel, each step of the master's "
        "lookup too). `health()` answers within it plus 500 ms.",
        setting="connect_timeout_ms"),
    Key("SOCKET_TIMEOUT", None, _milliseconds, "Bound on waiting for a reply on the "
        "shared client, in ms; unset: a read waits as long as it takes (the built-in "
        "plugins then wait at most CONNECT_TIMEOUT). Clients from `duplicate()` and "
        "`subscribe()` never have one.", setting="socket_timeout_ms"),
    Key("MAX_RETRIES", 3, parsers.integer(0), "Retries of a failed command or connect "
        "attempt, with a delay of min(n x 50 ms, 2000 ms) before retry n; a failed "
        "authentication and a full pool are never retried."),
    Key("RETRY_DEADLINE", None, _milliseconds, "Bounds retries by time instead: a failed "
        "command or connect is retried, with the same delays, as long as the next try "
        "starts within this many ms of the first; MAX_RETRIES then counts only for "
        "redis-py's Cluster pipeline loop.", setting="retry_deadline_ms"),
    Key("DECODE_RESPONSES", True, parsers.boolean, "Replies come as `str` (UTF-8) "
        "instead of `bytes`; `get_client(decode_responses=...)` gives the other kind."),
    Key("CLIENT_NAME", None, parsers.text, "Name set with CLIENT SETNAME on every "
        "connection; unset: none."),
    Key("HEALTH_CHECK_INTERVAL", 0, parsers.integer(0), "Seconds of idleness after which "
        "a pooled connection is PINGed before use; 0 turns it off (clients from "
        "`duplicate()` and `subscribe()` then use 30)."),
    Key("MAX_CONNECTIONS", None, parsers.integer(1), "Most connections a client's pool "
        "opens (per node in Cluster; no effect in memory mode); unset: redis-py's "
        "default, no limit before redis-py 8 and 100 from redis-py 8. A command that "
        "finds them all in use fails with MaxConnectionsError, or waits when "
        "POOL_TIMEOUT is set."),
    Key("POOL_TIMEOUT", None, _milliseconds, "Makes the pool wait: a command that finds "
        "all MAX_CONNECTIONS in use waits up to this many ms for a free one, then "
        "fails with MaxConnectionsError. Needs MAX_CONNECTIONS.",
        setting="pool_timeout_ms"),
    Key("KEY_PREFIX", "", _key_prefix, "Starts every key and pub/sub channel the "
        "extension and its built-in plugins write, e.g. `shop:`, so several apps can "
        "share one Redis (Cluster hash tags come after it). Commands sent through "
        "`ext.client` are sent as written."),
    Key("PLUGINS", None, _name_list, "Plugins to enable, in the order their hooks run "
        "(list, or names separated by commas); unset: every installed plugin, in name "
        "order."),
    Key("DISABLED_PLUGINS", (), _name_list, "Plugins to leave out (list, or names "
        "separated by commas), e.g. `otp`."),
    Key("HEALTH_ROUTE", None, _route, "Path at which `ext.health()` is served as "
        "JSON (e.g. `/healthz/redis`): 200 when ok, 503 when not; unset: no route."),
    Key("ERROR_HANDLER", False, parsers.boolean, "Turns a Redis connection error or "
        "timeout that escapes a view into a 503 JSON response instead of a 500."),
    Key("OTEL", False, parsers.boolean, "Records OpenTelemetry metrics and spans for "
        "this registration and its plugins (the `otel` extra), and redis-py's own metrics "
        "where the installed redis-py has them (7.2+; process-wide). See Observability."),
    Key("OTEL_REDIS_PY_METRICS", ("RESILIENCY", "CONNECTION_ADVANCED"), _metric_groups,
        "With `OTEL` on, redis-py's metric groups to turn on (a list, or names separated "
        "by commas): `RESILIENCY`, `CONNECTION_ADVANCED`, `CONNECTION_BASIC`, `COMMAND` "
        "(each command's duration); empty: none. The first registration to turn them on "
        "decides for the process."),
    Key("MEMORY_WARNING_RATIO", 0.9, parsers.number(0, 1, "expected a number above 0 "
        "and at most 1, e.g. 0.9"), "`health()` warns when used memory reaches this "
        "share of `maxmemory` (on Cluster, on any primary); no warning where "
        "`maxmemory` is 0 (no limit), nor in memory mode."),
)

KEYS_BY_SUFFIX = {key.suffix: key for key in KEYS}


def key_table(keys: tuple[Key, ...] = KEYS, prefix: str = "REDIS") -> str:
    """A configuration table as Markdown, as the configuration reference shows it."""
    rows = ["| Key | Default | Meaning |", "| --- | --- | --- |"]
    for key in keys:
        default = "" if key.default in (None, "", ()) else f"`{_plain(key.default)}`"
        rows.append(f"| `{prefix}_{key.suffix}` | {default} | {key.doc} |")
    return "\n".join(rows)


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
