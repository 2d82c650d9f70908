"""Attacks on TLS connects: a TLS server that hangs, and TLS spoken to a
plain port, must fail within about the connect timeout, never hang."""

import signal
import threading

import pytest
import redis

from .servers import RedisProcess, free_port

pytestmark = pytest.mark.integration


def outcome_within(call, seconds):
    """Run ``call`` in a thread; fail the test if it has not returned by then."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds}s: the TLS handshake hangs"
    return outcome


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

    outcome = outcome_within(ping, 20)
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

    outcome = outcome_within(ping, 20)
    assert isinstance(outcome.get("error"), redis.TimeoutError | redis.ConnectionError)
