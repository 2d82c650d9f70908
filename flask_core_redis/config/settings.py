"""The validated, immutable settings of one ``CoreRedis`` registration."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

Mode = Literal["standalone", "sentinel", "cluster", "memory"]

MASK = "***"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything needed to build a client. Secrets never leave it unmasked:
    ``repr`` and :meth:`describe` show ``***`` in their place.

    Built from the configuration keys when the extension is registered, and
    read as ``ext.settings``; the defaults live in the key table that the
    configuration reference shows, not here."""

    #: The registration's config prefix (``REDIS``).
    prefix: str
    #: The topology: ``standalone``, ``sentinel``, ``cluster`` or ``memory``.
    mode: Mode
    #: Where the server is, as ``(host, port)`` pairs: the server, the
    #: sentinels, or a Cluster's seed nodes; empty for a unix socket and memory.
    nodes: tuple[tuple[str, int], ...] = ()
    #: The path of a ``unix://`` URL's socket, else None.
    unix_socket: str | None = None
    #: The embedded server's name (``memory://<name>``): the clients of one
    #: name in one process share one server.
    memory_name: str = ""
    # One field per configuration key, named after it and documented in the
    # key table (Key.field names it).
    db: int
    username: str | None
    password: str | None = field(metadata={"secret": True})
    sentinel_master: str
    sentinel_username: str | None
    sentinel_password: str | None = field(metadata={"secret": True})
    #: TLS to the sentinels; False outside Sentinel mode.
    sentinel_ssl: bool
    ssl: bool
    ssl_ca_certs: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_cert_reqs: str
    connect_timeout_ms: float
    socket_timeout_ms: float | None
    max_retries: int
    retry_deadline_ms: float | None
    decode_responses: bool
    client_name: str | None
    health_check_interval: int
    max_connections: int | None
    pool_timeout_ms: float | None
    key_prefix: str
    plugins: tuple[str, ...] | None
    disabled_plugins: tuple[str, ...]
    health_route: str | None
    error_handler: bool
    otel: bool
    otel_redis_py_metrics: tuple[str, ...]
    memory_warning_ratio: float

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.describe().items())
        return f"Settings({shown})"

    @property
    def address(self) -> str:
        """Where this configuration points, without credentials."""
        if self.mode == "memory":
            return f"memory://{self.memory_name}"
        if self.unix_socket:
            return f"unix://{self.unix_socket}"
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        if self.mode == "sentinel":
            return f"{self.sentinel_master} via sentinels {hosts}"
        return hosts

    @property
    def connect_timeout(self) -> float:
        """``CONNECT_TIMEOUT`` in seconds."""
        return self.connect_timeout_ms / 1000

    @property
    def socket_timeout(self) -> float | None:
        """``SOCKET_TIMEOUT`` in seconds; None when unset (no bound)."""
        return None if self.socket_timeout_ms is None else self.socket_timeout_ms / 1000

    @property
    def retry_deadline(self) -> float | None:
        """``RETRY_DEADLINE`` in seconds; None when unset (retries counted instead)."""
        return None if self.retry_deadline_ms is None else self.retry_deadline_ms / 1000

    @property
    def pool_timeout(self) -> float | None:
        """``POOL_TIMEOUT`` in seconds; None when unset (a full pool fails at once)."""
        return None if self.pool_timeout_ms is None else self.pool_timeout_ms / 1000

    def describe(self) -> dict[str, object]:
        """Every setting by name, secrets replaced by ``***`` when set."""
        described: dict[str, object] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            secret = item.metadata.get("secret", False)
            described[item.name] = MASK if secret and value is not None else value
        return described
