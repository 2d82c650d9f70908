"""A wrong password is not an outage: it fails at once, on every topology."""

import signal
import time

import pytest
import redis

from .conftest import ACL_USER
from .servers import RedisProcess, free_port

pytestmark = pytest.mark.integration

SENTINEL_PASSWORD = "sentinel-s3cret"


def wrong_password_url(request, topology):
    if topology == "standalone":
        server = request.getfixturevalue("auth_server")
        return f"redis://{ACL_USER}:not-the-password@{server.address}"
    # These servers take any password for their default user; no other user exists.
    scheme, _, rest = request.getfixturevalue(topology).url.partition("://")
    return f"{scheme}://ghost:not-the-password@{rest}"


def refused_without_retries(app, ext):
    """The connection events of one ping that must fail as refused credentials."""
    kinds = []
    with app.app_context():
        ext.events.subscribe(lambda event: kinds.append(event.kind))
        with pytest.raises(redis.AuthenticationError):
            ext.client.ping()
    assert "retry" not in kinds
    return kinds


@pytest.mark.parametrize("topology", ["standalone", "sentinel", "cluster"])
def test_a_wrong_password_fails_at_once_without_retries(request, make_app, topology):
    app, ext = make_app({"REDIS_URL": wrong_password_url(request, topology),
                         "REDIS_MAX_RETRIES": 5})
    assert refused_without_retries(app, ext).count("error") >= 1
    result = app.test_cli_runner().invoke(args=["redis", "ping"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: AuthenticationError: ")
    assert len(result.output.splitlines()) == 1 and "not-the-password" not in result.output


@pytest.fixture
def guarded_sentinel(own_redis_server, tmp_path):
    """One sentinel that requires a password, watching a server of its own."""
    process = RedisProcess(tmp_path, free_port(), [
        f"sentinel monitor guarded 127.0.0.1 {own_redis_server.port} 1",
        f"requirepass {SENTINEL_PASSWORD}"], sentinel=True,
        client_kwargs={"password": SENTINEL_PASSWORD}).start()
    yield process
    process.stop()


def test_a_wrong_sentinel_password_fails_at_once(make_app, guarded_sentinel):
    url = f"redis+sentinel://{guarded_sentinel.address}/guarded"
    app, ext = make_app({"REDIS_URL": url, "REDIS_SENTINEL_PASSWORD": "not-the-password",
                         "REDIS_MAX_RETRIES": 5})
    refused_without_retries(app, ext)
    right, right_ext = make_app({"REDIS_URL": url, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD})
    with right.app_context():
        assert right_ext.client.ping()  # the same sentinel, with the password it wants


def test_no_password_shows_in_a_master_lookup_that_fails(make_app, guarded_sentinel, caplog):
    """redis-py 6.x puts each sentinel's repr, pool and password included, into
    MasterNotFoundError; the extension's pools show only where they connect."""
    down = f"127.0.0.1:{free_port()}"  # a sentinel that is down adds its repr to the error
    url = f"redis+sentinel://{guarded_sentinel.address},{down}/no-such-master"
    app, ext = make_app({"REDIS_URL": url, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
                         "REDIS_PASSWORD": "data-s3cret", "REDIS_MAX_RETRIES": 0})
    with app.app_context():
        with pytest.raises(redis.ConnectionError) as raised:
            ext.client.ping()
        shown = [str(raised.value), repr(raised.value), caplog.text, repr(ext.client)]
    assert down in str(raised.value)  # the message still says which sentinel failed
    assert not [text for text in shown if "s3cret" in text]


def test_no_password_shows_in_the_reprs_of_cluster_nodes(make_app, cluster):
    app, ext = make_app({"REDIS_URL": cluster.url})
    with app.app_context():
        nodes = ext.client.get_nodes()
        for node in nodes:  # as if the servers had wanted this password
            node.redis_connection.connection_pool.connection_kwargs["password"] = "s3cret"
        shown = [repr(nodes), repr(ext.client)]
    assert len(nodes) >= 3 and not [text for text in shown if "s3cret" in text]


def test_refused_sentinel_credentials_are_told_within_one_connect_timeout(
        make_app, guarded_sentinel, tmp_path):
    """One sentinel refuses the credentials, the other hangs (SIGSTOP): the
    sentinels are asked at once, and the refusal is raised, never retried,
    within one connect timeout; they had been asked one after another, and
    then each again."""
    hung = RedisProcess(tmp_path / "hung", free_port()).start()
    url = f"redis+sentinel://{guarded_sentinel.address},{hung.address}/guarded"
    app, ext = make_app({"REDIS_URL": url, "REDIS_SENTINEL_PASSWORD": "not-the-password",
                         "REDIS_CONNECT_TIMEOUT": 1000, "REDIS_MAX_RETRIES": 5})
    hung.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        refused_without_retries(app, ext)
        took = time.monotonic() - started
    finally:
        hung.signal(signal.SIGCONT)
        hung.stop()
    assert took <= 1.0 + 0.4, f"{took:.1f} s"
