"""TLS: the one place that turns the ``SSL_*`` keys into redis-py's keyword
arguments, for the data nodes of every mode and for the sentinels."""

from __future__ import annotations

from typing import Any

from ..config import Settings


def ssl_kwargs(settings: Settings) -> dict[str, Any]:
    """What an ``SSLConnection`` (or a ``Redis(ssl=True)``) needs to verify the
    server and present the client certificate."""
    return {
        "ssl_ca_certs": settings.ssl_ca_certs,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        "ssl_cert_reqs": settings.ssl_cert_reqs,
        "ssl_check_hostname": settings.ssl_cert_reqs == "required",
    }
