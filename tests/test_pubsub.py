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
        assert (message["channel"], message["data"]) == ("alerts", "first")
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
