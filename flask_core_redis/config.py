"""Every configuration key, its default and its meaning, in one table; and
:func:`load_settings`, which reads and validates them.

Values come from ``app.config`` first, then the process environment, then a
``.env`` file found from the working directory (read with python-dotenv,
without changing ``os.environ``). Key names carry the registration's prefix:
``REDIS_URL`` for the default prefix, ``CACHE_REDIS_URL`` for ``"CACHE_REDIS"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dotenv import dotenv_values, find_dotenv

from .errors import ConfigurationError
from .settings import MASK, Settings
from .urls import UrlError, mask_url, parse_nodes, parse_port, parse_url

Parser = Callable[[Any], Any]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
CERT_REQS = ("required", "optional", "none")


class _Invalid(ValueError):
    """A value is wrong; the message says what would be accepted."""


def _text(value: Any) -> str:
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise _Invalid(f"expected a boolean: one of {sorted(TRUE_WORDS | FALSE_WORDS)}")


def _integer(minimum: int, maximum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
            raise _Invalid(f"expected an integer >= {minimum}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise _Invalid(f"expected an integer >= {minimum}{upper}")
        return number

    return parse


def _number(above: float, at_most: float, expected: str) -> Parser:
    """A finite number in (above, at_most]."""
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _Invalid(expected) from None
        if not (above < number <= at_most and math.isfinite(number)):
            raise _Invalid(expected)
        return number

    return parse


_milliseconds = _number(0, math.inf, "expected a positive number of milliseconds")
_ratio = _number(0, 1, "expected a number above 0 and at most 1, e.g. 0.9")


def _port(value: Any) -> int:
    try:
        return parse_port(str(value).strip(), "the port")
    except UrlError:
        raise _Invalid("expected an integer from 1 to 65535") from None


def _cert_reqs(value: Any) -> str:
    word = str(value).strip().lower()
    if word not in CERT_REQS:
        raise _Invalid(f"expected one of {', '.join(CERT_REQS)}")
    return word


def _name_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple | set) else str(value).split(",")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not all(name.replace("_", "").replace("-", "").isalnum() for name in names):
        raise _Invalid("expected plugin names, as a list or separated by commas")
    return names


def _key_prefix(value: Any) -> str:
    text = str(value)
    if any(char in text for char in "{}") or any(char.isspace() for char in text):
        raise _Invalid("expected a prefix without spaces or braces (braces are hash tags)")
    return text


def _route(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith("/"):
        raise _Invalid("expected a URL path starting with '/', e.g. /healthz/redis")
    return text


def _node_list(default_port: int) -> Parser:
    def parse(value: Any) -> tuple[tuple[str, int], ...]:
        text = ",".join(value) if isinstance(value, list | tuple) else str(value)
        try:
            return parse_nodes(text, default_port)
        except UrlError as error:
            raise _Invalid(str(error)) from None

    return parse


@dataclass(frozen=True)
class Key:
    """One configuration key: suffix after the prefix, default, parser, docs."""

    suffix: str
    default: Any
    parse: Parser
    doc: str
    secret: bool = False
    #: The Settings field it fills: its own name in lower case by default;
    #: None for the keys that select the topology, which ``_topology`` reads.
    setting: str | None = ""

    @property
    def field(self) -> str | None:
        return self.suffix.lower() if self.setting == "" else self.setting


KEYS: tuple[Key, ...] = (
    Key("URL", None, _text, "Connection URL; wins over every key below when set "
        "(see the URL grammar).", setting=None),
    Key("HOST", "redis", _text, "Host of a standalone server.", setting=None),
    Key("PORT", 6379, _port, "Port of a standalone server.", setting=None),
    Key("DB", 0, _integer(0), "Database number (standalone and Sentinel)."),
    Key("USERNAME", None, _text, "ACL user name for the data nodes."),
    Key("PASSWORD", None, _text, "Password for the data nodes.", secret=True),
    Key("SENTINELS", None, _node_list(26379), "Sentinels as `h1:26379,h2:26379`; "
        "selects Sentinel mode.", setting=None),
    Key("SENTINEL_MASTER", "mymaster", _text, "Name of the master the sentinels monitor."),
    Key("SENTINEL_USERNAME", None, _text, "ACL user name for the sentinels themselves."),
    Key("SENTINEL_PASSWORD", None, _text, "Password for the sentinels themselves.",
        secret=True),
    Key("CLUSTER_NODES", None, _node_list(6379), "Cluster startup nodes as "
        "`h1:7000,h2:7001`; selects Cluster mode.", setting=None),
    Key("SSL", False, _bool, "Use TLS for a standalone HOST/PORT server "
        "(`rediss://` implies it)."),
    Key("SSL_CA_CERTS", None, _text, "CA bundle that verifies the server certificate."),
    Key("SSL_CERTFILE", None, _text, "Client certificate, for servers that require one."),
    Key("SSL_KEYFILE", None, _text, "Private key of the client certificate."),
    Key("SSL_CERT_REQS", "required", _cert_reqs, "Server certificate check: "
        "`required`, `optional` or `none`."),
    Key("CONNECT_TIMEOUT", 10000, _milliseconds, "Bound on one connect attempt, TCP "
        "connect and handshake, in ms.", setting="connect_timeout_ms"),
    Key("SOCKET_TIMEOUT", None, _milliseconds, "Bound on waiting for a reply, in ms; "
        "unset waits as long as the command takes.", setting="socket_timeout_ms"),
    Key("MAX_RETRIES", 3, _integer(0), "Retries of a failed command or connect "
        "attempt, with a delay of min(n x 50 ms, 2000 ms) before retry n."),
    Key("DECODE_RESPONSES", True, _bool, "Return `str` instead of `bytes`."),
    Key("CLIENT_NAME", None, _text, "Name set with CLIENT SETNAME on every connection."),
    Key("HEALTH_CHECK_INTERVAL", 0, _integer(0), "Seconds of idleness after which a "
        "pooled connection is PINGed before use; 0 turns it off (`duplicate()` uses 30)."),
    Key("KEY_PREFIX", "", _key_prefix, "Prepended to every key a plugin writes, so "
        "several apps can share one Redis (e.g. `shop:`)."),
    Key("PLUGINS", None, _name_list, "Plugins to enable (list, or names separated by "
        "commas); unset enables the built-ins and every installed plugin."),
    Key("DISABLED_PLUGINS", (), _name_list, "Plugins to leave out, e.g. `otp`."),
    Key("HEALTH_ROUTE", None, _route, "Serve `ext.health()` as JSON at this path "
        "(e.g. `/healthz/redis`): 200 when ok, 503 when not."),
    Key("ERROR_HANDLER", False, _bool, "Turn a Redis connection error or timeout "
        "escaping a view into a 503 JSON response instead of a 500."),
    Key("MEMORY_WARNING_RATIO", 0.9, _ratio, "`health()` warns when used memory "
        "reaches this share of `maxmemory`."),
)


def key_table(keys: tuple[Key, ...] = KEYS, prefix: str = "REDIS") -> str:
    """A configuration table as Markdown, as the README shows it."""
    rows = ["| Key | Default | Meaning |", "| --- | --- | --- |"]
    for key in keys:
        default = "" if key.default in (None, "", ()) else f"`{_plain(key.default)}`"
        rows.append(f"| `{prefix}_{key.suffix}` | {default} | {key.doc} |")
    return "\n".join(rows)


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class ConfigSource:
    """Looks a key up in app.config, then the environment, then ``.env``.
    Plugins read their own keys through it too, so every key behaves alike."""

    def __init__(self, prefix: str, config: Mapping[str, Any],
                 environ: Mapping[str, str], dotenv: Mapping[str, str | None]) -> None:
        self.prefix = prefix
        self.layers = (config, environ, dotenv)

    def name(self, key: Key) -> str:
        return f"{self.prefix}_{key.suffix}"

    def raw(self, key: Key) -> Any:
        for layer in self.layers:
            value = layer.get(self.name(key))
            if value is not None and value != "":
                return value
        return None

    def get(self, key: Key) -> Any:
        value = self.raw(key)
        if value is None:
            return key.default
        try:
            return key.parse(value)
        except _Invalid as error:
            raise ConfigurationError(
                f"{self.name(key)}={_shown(key, value)} is invalid: {error}") from None


def _shown(key: Key, value: Any) -> str:
    if key.secret:
        return MASK
    return repr(mask_url(value) if isinstance(value, str) else value)


_KEYS_BY_SUFFIX = {key.suffix: key for key in KEYS}


def config_source(prefix: str, config: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None,
                  dotenv: Mapping[str, str | None] | None = None) -> ConfigSource:
    """Where keys for ``prefix`` are looked up; ``.env`` is read once, here."""
    if environ is None:
        environ = os.environ
    if dotenv is None:
        path = find_dotenv(usecwd=True)
        dotenv = dotenv_values(path) if path else {}
    return ConfigSource(prefix, config, environ, dotenv)


def load_settings(prefix: str, config: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None,
                  dotenv: Mapping[str, str | None] | None = None) -> Settings:
    """Read and validate the keys for ``prefix``; raise ConfigurationError early."""
    return settings_from(config_source(prefix, config, environ, dotenv))


def settings_from(source: ConfigSource) -> Settings:
    """Validated settings from ``source``."""
    prefix = source.prefix
    values = {key.suffix: source.get(key) for key in KEYS}
    merged = {key.field: values[key.suffix] for key in KEYS if key.field is not None}
    merged.update(_topology(source, values))
    settings = Settings(prefix=prefix, **merged)
    _check_consistency(source, settings)
    return settings


def _topology(source: ConfigSource, values: dict[str, Any]) -> dict[str, Any]:
    """Mode and addresses: the URL when set, else Sentinel, Cluster, HOST/PORT."""
    url_key = _KEYS_BY_SUFFIX["URL"]
    if values["URL"] is not None:
        try:
            parsed = parse_url(values["URL"].strip())
        except UrlError as error:
            raise ConfigurationError(
                f"{source.name(url_key)}={_shown(url_key, values['URL'])} is invalid: "
                f"{error}") from None
        # What the URL leaves out (db, credentials, master name) comes from the keys.
        return {name: value for name, value in vars(parsed).items() if value is not None}
    sentinels, cluster = values["SENTINELS"], values["CLUSTER_NODES"]
    if sentinels is not None and cluster is not None:
        raise ConfigurationError(
            f"{source.prefix}_SENTINELS and {source.prefix}_CLUSTER_NODES are both set; "
            "set only one: Sentinel and Cluster are different topologies")
    if sentinels is not None:
        return {"mode": "sentinel", "nodes": sentinels}
    if cluster is not None:
        return {"mode": "cluster", "nodes": cluster}
    return {"mode": "standalone", "nodes": ((values["HOST"], values["PORT"]),)}


def _check_consistency(source: ConfigSource, settings: Settings) -> None:
    prefix = source.prefix
    if settings.mode == "cluster" and settings.db != 0:
        raise ConfigurationError(f"{prefix}_DB={settings.db} is invalid in Cluster mode: "
                                 "Redis Cluster has only database 0")
    if settings.ssl and (settings.mode != "standalone" or settings.unix_socket):
        raise ConfigurationError(
            f"TLS ({prefix}_SSL or rediss://) is supported for a standalone TCP server "
            f"only; {settings.mode} mode over TLS is not supported yet")
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        raise ConfigurationError(f"{prefix}_SSL_CERTFILE and {prefix}_SSL_KEYFILE go "
                                 "together: set both or neither")
