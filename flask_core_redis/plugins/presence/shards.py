"""Where presence data lives: split over ``PRESENCE_SHARDS`` hash slots, so a
Cluster spreads it over its masters.

A user belongs to one shard (CRC-32 of the id, the same in every process).
Each shard's keys share a hash tag, so a change to one user is one atomic
script or transaction. The tags are picked so that shard ``i`` falls in the
``i``-th equal part of the 16,384 slots: a cluster that splits its slots into
equal ranges, as ``redis-cli --cluster create`` does, gets the same number of
shards on every master. The key prefix comes before the tag, so every key
starts with it: ``shop:{presence:3.1}:users``; with one shard the tag is
``shop:{presence}``.

Keys of a shard, under its tag:

- ``users``: a sorted set, user -> the latest expiry of their connections (ms),
  while they have any: ``online_count`` is one ZCOUNT per shard.
- ``present``: the members of ``users`` as a plain set, for ``online_many``
  (see :data:`.scripts.ONLINE_MANY`).
- ``seen``: a sorted set, user -> when they went offline, kept
  ``PRESENCE_SEEN_DAYS``.
- ``c:<user>``: a sorted set, connection -> expiry, for a user with any other
  connection than the default one (see :mod:`.scripts`).
- ``replies:<second>``, and a few ``reply:<nonce>``: the replies of the opens
  and closes of that second, kept for their retries (``once_prelude``).
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Callable

#: How many hash slots a Redis Cluster has.
CLUSTER_SLOTS = 16384


def _slot(tag: str) -> int:
    """The Cluster slot of a hash tag's content (CRC16-XMODEM, as Redis does)."""
    return binascii.crc_hqx(tag.encode(), 0) % CLUSTER_SLOTS


def _spread_tag(base: str, index: int, count: int) -> str:
    """The first of ``base:index``, ``base:index.1``, ... whose slot lies in the
    ``index``-th of ``count`` equal slot ranges."""
    low, high = index * CLUSTER_SLOTS // count, (index + 1) * CLUSTER_SLOTS // count
    tag, attempt = f"{base}:{index}", 0
    while not low <= _slot(tag) < high:
        attempt += 1
        tag = f"{base}:{index}.{attempt}"
    return tag


class Shard:
    """The key names of one shard."""

    __slots__ = ("held_prefix", "present", "seen", "tag", "users")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.users = f"{tag}:users"
        self.present = f"{tag}:present"
        self.seen = f"{tag}:seen"
        self.held_prefix = f"{tag}:c:"

    def held(self, user: str) -> str:
        """The key of ``user``'s connections."""
        return self.held_prefix + user


class Shards:
    """Every shard of one app's presence data."""

    def __init__(self, slot_tag: Callable[[str], str], base: str, count: int) -> None:
        """``slot_tag`` turns a tag's content into the full tag, prefix
        included (:meth:`PluginContext.slot_tag`)."""
        tags = [base] if count == 1 else [_spread_tag(base, i, count) for i in range(count)]
        self.all = [Shard(slot_tag(tag)) for tag in tags]

    def of(self, user: str) -> Shard:
        return self.all[zlib.crc32(user.encode()) % len(self.all)]

    def group(self, users: list[str]) -> dict[int, list[int]]:
        """Shard index -> the positions in ``users`` of that shard's users."""
        count, crc32 = len(self.all), zlib.crc32
        groups: dict[int, list[int]] = {}
        for position, index in enumerate([crc32(user.encode()) % count for user in users]):
            if index in groups:
                groups[index].append(position)
            else:
                groups[index] = [position]
        return groups
