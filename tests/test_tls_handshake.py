"""TLS connects: a TLS server that hangs, and TLS spoken to a
plain port, must fail within about the connect timeout, never hang."""

import logging
import signal

import pytest
import redis

from .servers import RedisProcess, free_port, run_with_deadline

pytestmark = pytest.mark.integration


@pytest.fixture
def stopped_tls_server(tmp_path, tls_files):
    """A TLS server stopped by SIGSTOP: the kernel accepts the TCP connection,
    nobody answers the TLS handshake."""
    server = RedisProcess(tmp_path, free_port(), tls=tls_files).start()
    server.signal(signal.SIGSTOP)
    yield server
    server.stop()


@pytest.mark.parametrize("which", ["client", "duplicate"])
def test_a_hung_tls_server_fails_within_the_connect_timeout(make_app, stopped_tls_server,
                                                             tls_files, which):
    """CONNECT_TIMEOUT bounds "TCP connect and handshake"; with no socket
    timeout (the default) the TLS handshake used to wait forever."""
    app, ext = make_app({"REDIS_URL": f"rediss://{stopped_tls_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 300, "REDIS_MAX_RETRIES": 0,
                         **tls_files.config()})

    def ping():
        with app.app_context():
            client = ext.client if which == "client" else ext.duplicate()
            return client.ping()

    outcome = run_with_deadline(ping, 20)
    assert isinstance(outcome.get("error"), redis.TimeoutError | redis.ConnectionError)


def test_tls_spoken_to_a_plain_port_fails_within_the_connect_timeout(make_app, redis_server,
                                                                      tls_files):
    """A rediss:// URL that names a plain port: the server waits for a line
    the TLS hello never ends, so the handshake must be cut by the timeout."""
    app, ext = make_app({"REDIS_URL": f"rediss://{redis_server.address}",
                         "REDIS_CONNECT_TIMEOUT": 300, "REDIS_MAX_RETRIES": 0,
                         **tls_files.config()})

    def ping():
        with app.app_context():
            return ext.client.ping()

    outcome = run_with_deadline(ping, 20)
    assert isinstance(outcome.get("error"), redis.TimeoutError | redis.ConnectionError)


KEY_PASSPHRASE = "key-s3cret-passphrase"


@pytest.fixture(scope="module")
def encrypted_client_key(tls_files, tmp_path_factory):
    """The tests' client key, encrypted with KEY_PASSPHRASE."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls_files.client.read_bytes(), password=None)
    path = tmp_path_factory.mktemp("encrypted-key") / "client.key"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSPHRASE.encode())))
    return path


@pytest.mark.parametrize("deployment", ["tls_server", "tls_sentinel", "tls_cluster"])
def test_an_encrypted_client_key_with_its_passphrase_reaches_every_tls_node(
        request, make_app, tls_files, encrypted_client_key, deployment, key, caplog):
    """ssl_password is accepted in every TLS mode; on Sentinel it reached the
    data nodes only, so the sentinels, which need the same client
    certificate, could not be asked for the master."""
    server = request.getfixturevalue(deployment)
    url = f"rediss://{server.address}" if deployment == "tls_server" else server.url
    app, ext = make_app({"REDIS_URL": url, "REDIS_MAX_RETRIES": 0,
                         "REDIS_CONNECT_TIMEOUT": 2000, **tls_files.config(),
                         "REDIS_SSL_KEYFILE": str(encrypted_client_key)},
                        ssl_password=KEY_PASSPHRASE)

    def write():
        with app.app_context():
            return ext.client.set(key, "v")

    caplog.set_level(logging.DEBUG)
    outcome = run_with_deadline(write, 30)
    with app.app_context():
        shown = [repr(ext), repr(ext.client), repr(outcome.get("error")),
                 str(outcome.get("error")), caplog.text]
        if not isinstance(ext.client, redis.RedisCluster):
            shown.append(repr(ext.client.connection_pool))
    assert not [text for text in shown if KEY_PASSPHRASE in text]
    assert outcome.get("value") is True, repr(outcome.get("error"))
