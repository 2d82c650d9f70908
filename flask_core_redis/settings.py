"""The validated, immutable settings of one ``CoreRedis`` registration."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

Mode = Literal["standalone", "sentinel", "cluster", "memory"]

MASK = "***"


@dataclass(frozen=True)
class Settings:
    """Everything needed to build a client. Secrets never leave it unmasked:
    ``repr`` and :meth:`describe` show ``***`` in their place."""

    prefix: str
    mode: Mode
    nodes: tuple[tuple[str, int], ...] = ()
    unix_socket: str | None = None
    memory_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, metadata={"secret": True})
    sentinel_master: str = "mymaster"
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, metadata={"secret": True})
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    connect_timeout_ms: float = 10_000
    socket_timeout_ms: float | None = None
    max_retries: int = 3
    decode_responses: bool = True
    client_name: str | None = None
    health_check_interval: int = 0
    key_prefix: str = ""
    plugins: tuple[str, ...] | None = None
    disabled_plugins: tuple[str, ...] = ()
    health_route: str | None = None
    error_handler: bool = False
    memory_warning_ratio: float = 0.9

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
        return self.connect_timeout_ms / 1000

    @property
    def socket_timeout(self) -> float | None:
        return None if self.socket_timeout_ms is None else self.socket_timeout_ms / 1000

    def describe(self) -> dict[str, object]:
        """Every setting by name, secrets replaced by ``***`` when set."""
        described: dict[str, object] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            secret = item.metadata.get("secret", False)
            described[item.name] = MASK if secret and value is not None else value
        return described
