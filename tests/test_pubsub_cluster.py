"""Sharded pub/sub in Cluster: channels on several nodes, waits
with no message, unsubscribing, and the timeouts redis-py's PubSub accepts."""

import threading
import uuid

import pytest

from .servers import wait_until

pytestmark = pytest.mark.integration


def channels_on_every_master(cluster, count=3):
    """``count`` channel names whose slots are served by different masters."""
    chosen, owners = [], set()
    while len(chosen) < count:
        name = f"shard:{uuid.uuid4().hex}"
        owner = cluster.master_of(name).port
        if owner not in owners:
            owners.add(owner)
            chosen.append(name)
    return chosen


@pytest.fixture
def cluster_app(make_app, cluster):
    app, ext = make_app({"REDIS_URL": cluster.url})
    return app, ext


def confirmed(pubsub, count):
    """Read the ``count`` subscription confirmations."""
    kinds = []
    wait_until(lambda: (message := pubsub.get_message(timeout=0.1)) is not None
               and kinds.append(message["type"]) is None and len(kinds) == count, 10,
               "the confirmations")
    return kinds


def test_messages_on_every_node_arrive_and_a_wait_without_one_returns_none(cluster_app,
                                                                       cluster):
    app, ext = cluster_app
    names = channels_on_every_master(cluster)
    with app.app_context():
        pubsub = ext.subscribe(*names)
        assert confirmed(pubsub, 3) == ["ssubscribe"] * 3
        for name in names:
            assert ext.publish(name, name) == 1
        got = set()
        wait_until(lambda: (m := pubsub.get_message(timeout=0.1)) is not None
                   and got.add(m["channel"]) is None and got == set(names), 10,
                   "the messages of every node")
        # Measured, not asserted (no timing thresholds): 1.01 s, 0.01 s CPU.
        assert pubsub.get_message(timeout=1) is None


def test_after_unsubscribing_from_every_channel_a_wait_returns_none(cluster_app, cluster):
    app, ext = cluster_app
    names = channels_on_every_master(cluster)
    with app.app_context():
        pubsub = ext.subscribe(*names)
        confirmed(pubsub, 3)
        pubsub.unsubscribe(*names)
        assert confirmed(pubsub, 3) == ["sunsubscribe"] * 3
        assert pubsub.get_message(timeout=0.3) is None
        for name in names:
            assert ext.publish(name, "gone") == 0


def test_a_wait_without_a_timeout_blocks_until_a_message_as_in_redis_py(cluster_app,
                                                                          cluster):
    """redis-py's PubSub.get_message(timeout=None) waits until a message comes;
    ShardedPubSub is documented to read like any PubSub."""
    app, ext = cluster_app
    name, = channels_on_every_master(cluster, 1)
    with app.app_context():
        pubsub = ext.subscribe(name)
        confirmed(pubsub, 1)
        outcome = {}

        def wait():
            try:
                outcome["message"] = pubsub.get_message(timeout=None)
            except Exception as error:  # handed to the test
                outcome["error"] = error

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        wait_until(lambda: ext.publish(name, "late") == 1 and not waiter.is_alive(), 10,
                   "the waiter to get the message")
        assert "error" not in outcome, repr(outcome.get("error"))
        assert outcome["message"]["data"] == "late"


def test_a_subscriber_hears_its_channel_again_after_the_master_fails_over(make_app,
                                                                          own_cluster):
    """The channel's master is killed and its replica takes over: a Socket.IO
    or pub/sub subscriber on Cluster must hear the channel again. redis-py
    keeps the per-node subscription on the dead node: every get_message raises
    ConnectionError at once, and publishes reach no subscriber."""
    import redis

    from .servers import write_until

    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 500})
    name, = channels_on_every_master(own_cluster, 1)
    heard = []
    with app.app_context():
        client = ext.client  # built before the kill, as an app's would be
        pubsub = ext.subscribe(name)
        confirmed(pubsub, 1)
        own_cluster.master_of(name).kill()
        write_until(client, name, 30, [])  # the replica has taken over

        def hears_it():
            try:
                ext.publish(name, "after the failover")
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            except redis.RedisError:
                return False
            if message is not None:
                heard.append(message)
            return any(m["data"] == "after the failover" for m in heard)

        wait_until(hears_it, 30, "the subscriber to hear its channel after the failover")
