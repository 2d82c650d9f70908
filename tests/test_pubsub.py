"""Publish and subscribe, on memory, standalone, Sentinel and Cluster."""

import pytest

from .servers import wait_until


def next_message(pubsub, timeout=10):
    def received():
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        return message if message and message["type"] in ("message", "smessage") else None

    return wait_until(received, timeout, "a published message", interval=0)


def test_a_subscriber_receives_what_is_published(mode_app, mode):
    app, ext = mode_app()
    with app.app_context():
        pubsub = ext.subscribe("news", "alerts")
        wait_until(lambda: ext.publish("alerts", "first") >= 1, 10,
                   "the subscription to be active", interval=0.05)
        message = next_message(pubsub)
        channel = ext.settings.key_prefix + "alerts"  # KEY_PREFIX goes before every channel
        assert (message["channel"], message["data"]) == (channel, "first")
        ext.publish("news", "second")
        assert next_message(pubsub)["data"] == "second"
        assert message["type"] == ("smessage" if mode == "cluster" else "message")
        ext.publish("news", "third")
        for heard in pubsub.listen():
            if heard["type"] in ("message", "smessage"):
                assert heard["data"] == "third"
                break
        pubsub.close()


def test_subscribe_needs_a_channel(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context(), pytest.raises(ValueError, match="at least one channel"):
        ext.subscribe()


@pytest.mark.integration
def test_a_subscriber_follows_a_sentinel_failover_before_the_old_master_is_demoted(
        make_app, own_sentinel):
    """Publishers leave a replaced master within a second (the pool asks the
    sentinels); so must a subscriber, or it hears nothing they send until the
    sentinels demote the old master, some ten seconds later."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    old_port = own_sentinel.master_port()
    with app.app_context():
        pubsub = ext.subscribe("news")
        wait_until(lambda: ext.publish("news", "before") >= 1, 10, "the subscription")
        assert next_message(pubsub)["data"] == "before"
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        wait_until(lambda: own_sentinel.master_port() != old_port, 30, "the promotion")
        new_port = own_sentinel.master_port()
        client = ext.client  # the publisher, on the new master from here on
        wait_until(lambda: client.ping() and client.connection_pool.master_address[1]
                   == new_port, 10, "the publisher to learn of the new master", interval=0.2)

        def heard_after_the_failover():
            ext.publish("news", "after")
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            return message is not None and message["data"] == "after"

        wait_until(heard_after_the_failover, 8, "the subscriber on the new master", interval=0)
        with own_sentinel.process_on(old_port).client() as admin:  # the window tested
            assert admin.info("replication")["role"] == "master"
        pubsub.close()
