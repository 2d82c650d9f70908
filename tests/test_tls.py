"""TLS on Sentinel and Cluster: real servers that listen on TLS only and
require client certificates, with certificates made for the session."""

import logging
import uuid

import pytest
import redis
from redis.cluster import RedisCluster

from .servers import SentinelDeployment, TlsFiles, wait_until, write_until

pytestmark = pytest.mark.integration

PASSWORD, SENTINEL_PASSWORD = "tls-s3cret-pw", "sentinel-s3cret-pw"


def logged(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "flask_core_redis"]


def all_log_text(caplog):
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def node_keys(deployment, tls_files):
    """The same deployment as node-list keys with REDIS_SSL, not a URL."""
    if isinstance(deployment, SentinelDeployment):
        nodes = {"REDIS_SENTINELS": deployment.sentinel_addresses}
    else:
        nodes = {"REDIS_CLUSTER_NODES": ",".join(n.address for n in deployment.nodes[:3])}
    return {**nodes, "REDIS_SSL": "true", **tls_files.config()}


@pytest.mark.parametrize("form", ["url", "keys"])
def test_sentinel_over_tls_serves_commands_and_the_cache(make_app, tls_sentinel, tls_files,
                                                          key, caplog, form):
    caplog.set_level(logging.INFO, "flask_core_redis")
    config = ({"REDIS_URL": tls_sentinel.url, **tls_files.config()} if form == "url"
              else node_keys(tls_sentinel, tls_files))
    app, ext = make_app(config)
    with app.app_context():
        ext.client.set(key, "over-tls")
        ext.cache.set(key, {"n": 1})
        assert ext.cache.get(key) == {"n": 1}
        assert ext.get_client(decode_responses=False).get(key) == b"over-tls"
        report = ext.health()
    master_port = tls_sentinel.master_port()
    with tls_sentinel.process_on(master_port).client() as admin:
        assert admin.get(key) == "over-tls"
    assert (report["ok"], report["mode"], report["role"]) == (True, "sentinel", "master")
    assert f"[REDIS] 127.0.0.1:{master_port}: connected" in logged(caplog)


@pytest.mark.parametrize("form", ["url", "keys"])
def test_cluster_over_tls_spreads_commands_and_serves_the_cache(make_app, tls_cluster,
                                                                 tls_files, caplog, form):
    caplog.set_level(logging.INFO, "flask_core_redis")
    prefix = uuid.uuid4().hex
    config = ({"REDIS_URL": tls_cluster.url, **tls_files.config()} if form == "url"
              else node_keys(tls_cluster, tls_files))
    app, ext = make_app(config)
    with app.app_context():
        client = ext.client
        assert isinstance(client, RedisCluster)
        for n in range(30):
            client.set(f"{prefix}:{n}", n)
        assert [client.get(f"{prefix}:{n}") for n in range(30)] == [str(n) for n in range(30)]
        ext.cache.set(prefix, [1, 2])
        assert ext.cache.get(prefix) == [1, 2]
        report = ext.health()
    owners = {tls_cluster.master_of(f"{prefix}:{n}").port for n in range(30)}
    assert len(owners) == 3
    assert (report["ok"], report["cluster_state"], report["cluster_known_nodes"]) == (
        True, "ok", 6)
    connected = {m for m in logged(caplog) if m.endswith(": connected")}
    assert {f"[REDIS] 127.0.0.1:{port}: connected" for port in owners} <= connected


def test_sentinel_failover_over_tls_reaches_the_promoted_replica(make_app, own_tls_sentinel,
                                                                 tls_files, key, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    deployment = own_tls_sentinel
    app, ext = make_app({"REDIS_URL": deployment.url, "REDIS_CONNECT_TIMEOUT": 500,
                         **tls_files.config()})
    errors: list[Exception] = []
    with app.app_context():
        write_until(ext.client, key, 5, errors)
        deployment.process_on(deployment.master_port()).kill()
        write_until(ext.client, key, 30, errors)
    deployment.wait_for_master(deployment.replica.port)
    with deployment.replica.client() as admin:  # over TLS, as the tests' admin is
        assert admin.info("replication")["role"] == "master"
        assert int(admin.get(key)) >= 1
    assert errors, "the kill went unnoticed: the test proved nothing"
    assert f"[REDIS] 127.0.0.1:{deployment.replica.port}: connected" in logged(caplog)
    assert any(": retry " in m for m in logged(caplog))


def test_cluster_master_kill_over_tls_moves_writes_to_its_replica(make_app, own_tls_cluster,
                                                                   tls_files, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    key = f"failover:{uuid.uuid4().hex}"
    app, ext = make_app({"REDIS_URL": own_tls_cluster.url, "REDIS_CONNECT_TIMEOUT": 500,
                         **tls_files.config()})
    errors: list[Exception] = []
    with app.app_context():
        client = ext.client
        client.incr(key)
        own_tls_cluster.wait_replicated(key)  # else the kill may lose it
        victim = own_tls_cluster.master_of(key)
        victim.kill()
        caplog.clear()
        write_until(client, key, 30, errors)
        assert int(client.get(key)) == 2
    successor = wait_until(lambda: (master := own_tls_cluster.master_of(key)) is not victim
                           and master, 10, "the nodes to see the new master")
    with successor.client() as admin:
        assert admin.execute_command("ROLE")[0] == "master"
    assert errors, "the kill went unnoticed: the test proved nothing"
    messages = logged(caplog)
    assert f"[REDIS] 127.0.0.1:{successor.port}: connected" in messages
    assert [m.rsplit(": ", 1)[1] for m in messages if ": retry " in m][:2] == [
        "retry 1 in 50 ms", "retry 2 in 100 ms"]


@pytest.mark.parametrize("deployment", ["tls_sentinel", "tls_cluster"])
def test_a_server_certificate_of_another_ca_is_refused_clearly_and_briefly(
        request, make_app, tmp_path, caplog, deployment):
    """A client that trusts another CA refuses the servers: a ConnectionError
    that says why, after the configured retries only; neither the passwords
    nor the key's path shows in the error, the log or the reprs."""
    caplog.set_level(logging.DEBUG)
    other = TlsFiles(tmp_path / "other-ca")
    app, ext = make_app({"REDIS_URL": request.getfixturevalue(deployment).url,
                         **other.config(), "REDIS_MAX_RETRIES": 1,
                         "REDIS_PASSWORD": PASSWORD,
                         "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD})
    with app.app_context(), pytest.raises(redis.ConnectionError,
                                          match="certificate verify failed") as caught:
        ext.client.ping()
    retries = [m.rsplit(": ", 1)[1] for m in logged(caplog) if ": retry " in m]
    assert retries[:1] == ["retry 1 in 50 ms"] and "retry 2 in 100 ms" not in retries
    shown = [str(caught.value), repr(caught.value), all_log_text(caplog), repr(ext)]
    if deployment == "tls_sentinel":  # a cluster client is not built without a node
        with app.app_context():
            pool = ext.client.connection_pool
            shown += [repr(ext.client), repr(pool), repr(pool.make_connection())]
    for secret in (PASSWORD, SENTINEL_PASSWORD, str(other.client), str(tmp_path)):
        assert not [text for text in shown if secret in text], secret


def test_tls_to_the_sentinels_and_to_the_data_nodes_are_set_apart(make_app, mixed_sentinel,
                                                                  tls_files, key):
    """REDIS_SENTINEL_SSL says how to reach the sentinels, the URL's scheme how
    to reach the data nodes; the sentinels reached the other way, the client
    cannot connect."""
    tls_sentinels = mixed_sentinel.tls_sentinels
    app, ext = make_app({"REDIS_URL": mixed_sentinel.url, "REDIS_SENTINEL_SSL": tls_sentinels,
                         **tls_files.config()})
    with app.app_context():
        ext.client.set(key, "mixed")
        assert ext.health()["ok"] is True
    with mixed_sentinel.process_on(mixed_sentinel.master_port()).client() as admin:
        assert admin.get(key) == "mixed"
    files = tls_files.config() if mixed_sentinel.tls_data else {}  # else nothing is TLS
    wrong, wrong_ext = make_app({"REDIS_URL": mixed_sentinel.url, "REDIS_MAX_RETRIES": 0,
                                 "REDIS_SENTINEL_SSL": not tls_sentinels,
                                 "REDIS_CONNECT_TIMEOUT": 300, **files})
    with wrong.app_context(), pytest.raises(redis.ConnectionError, match="No master found"):
        wrong_ext.client.ping()
