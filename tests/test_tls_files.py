"""The TLS files: a file that is not there must be refused when
the app starts, naming the key, not met at the first connect as what reads
like an unreachable server."""

import pytest

from flask_core_redis import ConfigurationError

URLS = ["rediss://127.0.0.1:1", "rediss+sentinel://127.0.0.1:1/m",
        "rediss+cluster://127.0.0.1:1"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("missing", ["SSL_CA_CERTS", "SSL_CERTFILE", "SSL_KEYFILE"])
def test_a_tls_file_that_does_not_exist_is_refused_at_init_app(make_app, tmp_path, url,
                                                                missing):
    """Otherwise the app would start, and every connect fail with "Error 2
    connecting to host:port. No such file or directory.", retried as an outage."""
    present = tmp_path / "present.pem"
    present.write_text("not read before a connect\n")
    config = {f"REDIS_{suffix}": str(present)
              for suffix in ("SSL_CA_CERTS", "SSL_CERTFILE", "SSL_KEYFILE")}
    config[f"REDIS_{missing}"] = str(tmp_path / "absent.pem")
    with pytest.raises(ConfigurationError, match=f"REDIS_{missing}"):
        make_app({"REDIS_URL": url, **config})
