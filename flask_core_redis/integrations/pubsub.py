"""Publish and subscribe on the app's Redis, in every mode.

In Cluster mode both sides use sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis
7): a message goes only to the shard that owns its channel instead of being
broadcast over the cluster bus to every node. The subscription reads the same
way in every mode (``get_message``); in Cluster messages have the type
``smessage`` instead of ``message``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from redis.cluster import RedisCluster


def publish(client: Any, channel: str, message: str | bytes) -> int:
    """Send ``message``; the number of subscribers that got it."""
    # Typed Any: redis-py 6.x annotates every reply as possibly awaitable.
    received: Any = (client.spublish(channel, message) if isinstance(client, RedisCluster)
                     else client.publish(channel, message))
    return int(received)


#: How long a read waits on one node before trying the next.
NODE_TURN_SECONDS = 0.01


#: The replies that confirm a (un)subscription rather than carry a message.
SUBSCRIPTION_KINDS = frozenset({"ssubscribe", "sunsubscribe"})


class ShardedPubSub:
    """A Cluster PubSub that reads like any other: ``get_message``, ``listen``,
    ``subscribe`` and ``unsubscribe`` use the sharded commands; the rest is
    redis-py's ``ClusterPubSub``."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pubsub, name)

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float = 0.0) -> Any:
        """The next message from any node, waiting up to ``timeout`` seconds.

        Each node is read by name, in turn, and subscription confirmations are
        left out here: redis-py 6.x's own round robin ignores the timeout, and
        asked to leave them out it returned None for every message."""
        deadline = time.monotonic() + timeout
        while True:
            names = list(self.pubsub.node_pubsub_mapping)
            # One node: wait on its socket; several: take turns in short waits.
            wait = max(0.0, deadline - time.monotonic())
            turn = wait if len(names) == 1 else min(wait, NODE_TURN_SECONDS)
            for name in names:
                message = self.pubsub.get_sharded_message(
                    timeout=turn, target_node=self.pubsub.cluster.get_node(node_name=name))
                if message is not None and not (
                        ignore_subscribe_messages and _confirms_a_subscription(message)):
                    return message
            if time.monotonic() >= deadline:
                return None
            if not names:  # nothing subscribed (yet): nothing to wait on
                time.sleep(min(wait, NODE_TURN_SECONDS))

    def listen(self) -> Iterator[Any]:
        """Every message as it arrives, subscription confirmations included."""
        while True:
            message = self.get_message(timeout=1.0)
            if message is not None:
                yield message

    def subscribe(self, *channels: str) -> Any:
        return self.pubsub.ssubscribe(*channels)

    def unsubscribe(self, *channels: str) -> Any:
        return self.pubsub.sunsubscribe(*channels)


def _confirms_a_subscription(message: dict[str, Any]) -> bool:
    kind = message["type"]
    return (kind.decode() if isinstance(kind, bytes) else kind) in SUBSCRIPTION_KINDS


def subscribe(client: Any, *channels: str) -> Any:
    """A PubSub on ``client`` (give it a client of its own, such as
    ``ext.duplicate()``), subscribed to ``channels``."""
    if not channels:
        raise ValueError("subscribe() needs at least one channel")
    pubsub = client.pubsub()
    # The PubSub keeps only the pool; without this the client could be
    # collected, and closing it would close the subscription's connection.
    pubsub.owner = client
    if isinstance(client, RedisCluster):
        pubsub = ShardedPubSub(pubsub)
    pubsub.subscribe(*channels)
    return pubsub
