"""Cluster: six real nodes, three masters with one replica each."""

import json
import logging
import time
import uuid

import pytest
import redis
from redis.cluster import RedisCluster

from .servers import free_port, health_version, wait_until

pytestmark = pytest.mark.integration


def test_commands_spread_over_the_masters(make_app, cluster):
    prefix = uuid.uuid4().hex
    app, ext = make_app({"REDIS_URL": cluster.url})
    with app.app_context():
        client = ext.client
        assert isinstance(client, RedisCluster)
        for n in range(30):
            client.set(f"{prefix}:{n}", n)
        assert [client.get(f"{prefix}:{n}") for n in range(30)] == [str(n) for n in range(30)]
    owners = {cluster.master_of(f"{prefix}:{n}").port for n in range(30)}
    assert len(owners) == 3


def test_cluster_nodes_key_and_health(make_app, cluster):
    app, ext = make_app({"REDIS_CLUSTER_NODES": cluster.nodes[0].address})
    with app.app_context():
        report = ext.health()
    assert report["ok"] is True
    assert (report["mode"], report["role"], report["cluster_state"]) == (
        "cluster", "cluster", "ok")
    assert (report["cluster_known_nodes"], report["cluster_size"]) == (6, 3)
    with cluster.nodes[0].client() as admin:
        assert report["server_version"] == health_version(admin.info("server"))


def test_cli_keys_del_and_flush_cover_every_master(make_app, cluster):
    prefix = uuid.uuid4().hex
    app, ext = make_app({"REDIS_URL": cluster.url})
    with app.app_context():
        for n in range(40):
            ext.client.set(f"{prefix}:{n}", n)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["redis", "keys", f"{prefix}:*", "--limit", "1000"])
    assert sorted(listed.output.split()) == sorted(f"{prefix}:{n}" for n in range(40))
    deleted = runner.invoke(args=["redis", "del", f"{prefix}:0", f"{prefix}:1", "nope"])
    assert deleted.output == "2\n"
    info = runner.invoke(args=["redis", "info", "server"])
    assert info.exit_code == 0 and info.output.count("redis_version") == 3
    assert json.loads(runner.invoke(args=["redis", "health"]).output)["ok"] is True
    assert runner.invoke(args=["redis", "flush", "--yes"]).exit_code == 0
    with app.app_context():
        assert ext.client.dbsize() == 0


def test_unreachable_cluster_is_retried_with_delays_then_a_connection_error(make_app,
                                                                             caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = make_app({"REDIS_URL": f"redis+cluster://127.0.0.1:{free_port()}",
                         "REDIS_MAX_RETRIES": 2, "REDIS_CONNECT_TIMEOUT": 300})
    with app.app_context():
        with pytest.raises(redis.ConnectionError):
            ext.client.ping()
        assert ext.health()["ok"] is False
    retries = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records
               if ": retry " in r.getMessage()]
    assert retries[:2] == ["retry 1 in 50 ms", "retry 2 in 100 ms"]


def test_killed_master_replica_takes_over_and_client_follows(make_app, own_cluster, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    key = f"failover:{uuid.uuid4().hex}"
    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 500})
    with app.app_context():
        client = ext.client
        client.set(key, "before")
        victim = own_cluster.master_of(key)
        victim.kill()
        caplog.clear()
        errors = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.set(key, "after")
                break
            except redis.RedisError as error:
                errors.append(error)
        else:
            pytest.fail(f"writes did not resume: {errors[-3:]}")
        assert client.get(key) == "after"
    # The node asked may hear of the promotion by gossip a moment after the
    # client found the new master.
    successor = wait_until(lambda: (master := own_cluster.master_of(key)) is not victim
                           and master, 10, "the nodes to see the new master")
    with successor.client() as admin:
        assert admin.execute_command("ROLE")[0] == "master"
    # Each failing command waited 50, 100, 150 ms between its tries, rather
    # than burning its retries back to back as redis-py's cluster loop does.
    first_retries = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records
                     if ": retry " in r.getMessage()][:3]
    assert errors, "the kill went unnoticed: the test proved nothing"
    assert first_retries == ["retry 1 in 50 ms", "retry 2 in 100 ms", "retry 3 in 150 ms"], (
        [r.getMessage() for r in caplog.records][:20])


def test_pipelines_run_across_slots_with_the_policy_retry_count(make_app, cluster):
    prefix = uuid.uuid4().hex
    app, ext = make_app({"REDIS_URL": cluster.url, "REDIS_MAX_RETRIES": 4})
    with app.app_context():
        pipe = ext.client.pipeline()
        for n in range(10):
            pipe.set(f"{prefix}:{n}", n)
        assert pipe.execute() == [True] * 10
        assert pipe.retry.get_retries() == 4
        assert ext.client.mget_nonatomic([f"{prefix}:{n}" for n in range(3)]) == ["0", "1", "2"]


def test_a_cluster_with_every_node_down_is_an_outage_everywhere(make_app, own_cluster):
    """redis-py reports an unreachable cluster with an exception that is no
    RedisError; it must read as the outage it is: a health report, a cache
    miss, OtpUnavailable and a 503, never a 500."""
    from flask_core_redis.plugins.otp import OtpUnavailable

    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 300,
                         "REDIS_SOCKET_TIMEOUT": 300, "REDIS_ERROR_HANDLER": True,
                         "REDIS_HEALTH_ROUTE": "/health", "REDIS_MAX_RETRIES": 1})
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/counter")
    def counter():
        return {"n": ext.client.incr("counter")}

    with app.app_context():
        ext.cache.set("k", 1)
        assert ext.health()["ok"] is True
    for node in own_cluster.nodes:
        node.kill()
    with app.app_context():
        report = ext.health()
        assert report["ok"] is False and report["error"].startswith("ConnectionError")
        assert ext.cache.get("k", "miss") == "miss"
        with pytest.raises(OtpUnavailable):
            ext.otp.verify_otp("+15550109988", "123456")
        with pytest.raises(redis.ConnectionError):
            ext.client.get("k")
    web = app.test_client()
    assert web.get("/health").status_code == 503
    assert web.get("/counter").status_code == 503


def test_a_node_flag_is_retried_and_an_explicit_node_is_not(make_app, own_cluster,
                                                            events_log):
    """A command sent to a flag (PRIMARIES ...) finds its nodes again
    from the slot map on each try, so it is retried as any command; one sent
    to a node object is not, as that node may no longer be the right one."""
    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 300,
                         "REDIS_MAX_RETRIES": 2})
    with app.app_context():
        node = ext.client.get_primaries()[0]
        for each in own_cluster.nodes:
            each.kill()
        retries = []
        # (Not RANDOM: redis-py 6.4 then raises IndexError, its node cache
        # emptied by the failed tries.)
        for target in (RedisCluster.PRIMARIES, node):
            events_log.clear()
            with pytest.raises(redis.ConnectionError):
                ext.client.ping(target_nodes=target)
            retries.append(sum(": retry " in record.getMessage()
                               for record in events_log.records))
    assert retries == [2, 0]
