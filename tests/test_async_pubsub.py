"""Publish and subscribe from asyncio code (``ext.asubscribe``,
``ext.apublish``) on memory, standalone, Sentinel and Cluster: messages
arrive, the subscription's connection closes when the iteration ends, and it
subscribes again after its connection is lost or its master fails over."""

import asyncio
import contextlib
import time

import pytest
import redis

from .servers import wait_until

#: How long a test waits for what should take well under a second.
PATIENCE = 10


async def eventually(condition, timeout, what):
    """Await ``condition()`` until it returns a truthy value or ``timeout``
    seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def heard(ext, messages, channel, text, timeout=PATIENCE):
    """Publish ``text`` on ``channel`` until the subscription yields it (it
    may be subscribing still, or again); the message."""
    pending = asyncio.ensure_future(anext(messages))
    try:
        async def arrived():
            with contextlib.suppress(redis.RedisError):  # a publisher's failover
                await ext.apublish(channel, text)
            done, _ = await asyncio.wait({pending}, timeout=0.2)
            return pending.result() if done else None

        message = await eventually(arrived, timeout, f"{text!r} on {channel!r}")
    except BaseException:
        pending.cancel()
        raise
    while message["data"] != text:  # one sent earlier, before it was heard
        message = await asyncio.wait_for(anext(messages), PATIENCE)
    return message


def test_a_subscriber_receives_what_is_published_and_leaves_when_it_stops(mode_app, mode):
    app, ext = mode_app()

    async def scenario():
        messages = ext.asubscribe("news", "alerts")
        message = await heard(ext, messages, "alerts", "first")
        # KEY_PREFIX goes before every channel, as for ext.subscribe
        assert message["channel"] == ext.settings.key_prefix + "alerts"
        assert message["type"] == ("smessage" if mode == "cluster" else "message")
        assert (await heard(ext, messages, "news", "second"))["data"] == "second"
        await ext.apublish("news", "third")
        async for message in messages:  # the form users write
            assert message["data"] == "third"
            break
        del messages  # as when the loop held the only reference: closed by the event loop
        await left(ext, "news", "alerts")

        async def listen():
            async for _ in ext.asubscribe("news"):
                pass

        listening = asyncio.ensure_future(listen())
        await eventually(lambda: ext.apublish("news", "anyone?"), PATIENCE, "the subscription")
        listening.cancel()
        await left(ext, "news")

    with app.app_context():
        asyncio.run(scenario())


async def left(ext, *channels):
    """Wait until no subscriber is left on ``channels``."""
    await eventually(lambda: _nobody_listens(ext, *channels), PATIENCE,
                     "the subscription's connection to close")


async def _nobody_listens(ext, *channels):
    return all([await ext.apublish(channel, "anyone?") == 0 for channel in channels])


def test_asubscribe_needs_a_channel(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context(), pytest.raises(ValueError, match="at least one channel"):
        ext.asubscribe()


@pytest.mark.integration
def test_a_subscriber_subscribes_again_after_its_connection_is_killed(make_app, redis_server):
    app, ext = make_app({"REDIS_URL": f"redis://{redis_server.address}"})

    async def scenario():
        messages = ext.asubscribe("news")
        await heard(ext, messages, "news", "before")
        with redis_server.client() as admin:
            assert admin.client_kill_filter(_type="pubsub") >= 1
        assert (await heard(ext, messages, "news", "after"))["data"] == "after"
        await messages.aclose()

    with app.app_context():
        asyncio.run(scenario())


@pytest.mark.integration
def test_a_subscriber_follows_a_sentinel_failover_before_the_old_master_is_demoted(
        make_app, own_sentinel):
    """As ext.subscribe does: publishers leave a replaced master within a
    second; the subscriber must too, or it hears nothing until the sentinels
    demote the old master, some ten seconds later."""
    app, ext = make_app({"REDIS_URL": own_sentinel.url})
    old_port = own_sentinel.master_port()

    async def scenario():
        messages = ext.asubscribe("news")
        await heard(ext, messages, "news", "before")
        with own_sentinel.sentinels[0].client() as sentinel_admin:
            sentinel_admin.execute_command("SENTINEL", "FAILOVER", own_sentinel.master_name)
        await asyncio.to_thread(wait_until, lambda: own_sentinel.master_port() != old_port,
                                30, "the promotion")
        assert (await heard(ext, messages, "news", "after", timeout=8))["data"] == "after"
        with own_sentinel.process_on(old_port).client() as admin:  # the window tested
            assert admin.info("replication")["role"] == "master"
        await messages.aclose()

    with app.app_context():
        asyncio.run(scenario())


@pytest.mark.integration
def test_a_subscriber_hears_its_channel_again_after_its_cluster_master_fails_over(
        make_app, own_cluster):
    from .test_pubsub_cluster import channels_on_every_master

    app, ext = make_app({"REDIS_URL": own_cluster.url, "REDIS_CONNECT_TIMEOUT": 500})
    name, other = channels_on_every_master(own_cluster, 2)

    async def scenario():
        messages = ext.asubscribe(name, other)
        await heard(ext, messages, name, "before")
        own_cluster.master_of(name).kill()
        assert (await heard(ext, messages, name, "after", timeout=30))["data"] == "after"
        assert (await heard(ext, messages, other, "elsewhere"))["data"] == "elsewhere"
        await messages.aclose()

    with app.app_context():
        asyncio.run(scenario())
