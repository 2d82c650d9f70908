"""What the sentinels say about a master, read into plain records: their
pub/sub announcements as a failover goes, and their answer to
``SENTINEL MASTER <name>``.

A failover, as one sentinel (the leader) announces it::

    +failover-state-send-slaveof-noone  slave <ip>:<port> <ip> <port> @ <master> <ip> <port>
    +promoted-slave                     slave <ip>:<port> <ip> <port> @ <master> <ip> <port>
    +switch-master                      <master> <old ip> <old port> <new ip> <new port>

The first comes just before the leader tells the chosen replica to stop
replicating: from then on a write to the old master may be lost. The second
once the replica reports itself master (up to a second later: the leader
reads its role from INFO), the third once the other replicas follow it (at
once with one replica; with several, once they have synced, or
``+failover-end-for-timeout`` says they took too long). Every sentinel
announces ``+switch-master`` when it adopts the new address; only the leader
announces the others. ``-failover-abort-*`` ends a failover without a
promotion.

Until ``+switch-master``, the sentinels still name the old master when
asked: the leader with the failover's epoch and the flag
``failover_in_progress``, the others with the epoch before."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

#: ``(host, port)`` as the sentinels name a server.
Address = tuple[str, int]

FAILOVER_STARTED = "+failover-state-send-slaveof-noone"
PROMOTED = "+promoted-slave"
SWITCHED = "+switch-master"
NEW_EPOCH = "+new-epoch"
#: The channels a watch subscribes to, and the pattern of the aborts.
CHANNELS = (FAILOVER_STARTED, PROMOTED, SWITCHED, NEW_EPOCH)
ABORTED = "-failover-abort-*"


class Kind(enum.Enum):
    FAILOVER_STARTED = "a failover started"
    MOVED = "the master moved"
    FAILOVER_ABORTED = "a failover ended without a promotion"
    NEW_EPOCH = "a new epoch began"


@dataclass(frozen=True)
class Announcement:
    """One message of a sentinel's pub/sub: what happened, to which master
    (None for a new epoch), the new address when the master moved, and the
    epoch for a new epoch."""

    kind: Kind
    master: str | None = None
    address: Address | None = None
    epoch: int | None = None


def read_announcement(channel: object, data: object) -> Announcement | None:
    """The announcement a message of ``channel`` makes; None for a message
    this does not follow or cannot read (a sentinel's format may change)."""
    if not isinstance(channel, str) or not isinstance(data, str):
        return None
    words = data.split()
    try:
        if channel == NEW_EPOCH:
            return Announcement(Kind.NEW_EPOCH, epoch=int(words[0]))
        if channel == SWITCHED:
            master, _, _, host, port = words
            return Announcement(Kind.MOVED, master, (host, int(port)))
        named = _master_named(words)
        if named is None:
            return None
        if channel == PROMOTED:
            return Announcement(Kind.MOVED, named, (words[2], int(words[3])))
        if channel == FAILOVER_STARTED:
            return Announcement(Kind.FAILOVER_STARTED, named)
        if channel.startswith(ABORTED.rstrip("*")):
            return Announcement(Kind.FAILOVER_ABORTED, named)
    except (ValueError, IndexError):
        return None
    return None


def _master_named(words: Sequence[str]) -> str | None:
    """The master an event is about: ``master <name> <ip> <port>`` for the
    master itself, ``... @ <name> <ip> <port>`` for one of its replicas."""
    if words[:1] == ["master"] and len(words) >= 2:
        return words[1]
    if "@" in words:
        after = words[words.index("@") + 1:]
        return after[0] if after else None
    return None


@dataclass(frozen=True)
class MasterAnswer:
    """A sentinel's answer to ``SENTINEL MASTER <name>``: where the master
    is, the epoch of that configuration, whether the sentinel holds the
    master usable (reachable, as redis-py's own lookup requires), and
    whether the sentinel is failing it over (then the address is the one
    being replaced)."""

    address: Address
    epoch: int
    usable: bool
    failing_over: bool = False


def read_master_answer(reply: object) -> MasterAnswer:
    """``reply``, a flat list of field names and values, as a MasterAnswer;
    a ValueError when it is not one."""
    if not isinstance(reply, Sequence) or isinstance(reply, str | bytes):
        raise ValueError(f"not a master's description: {type(reply).__name__}")
    fields = dict(zip(reply[::2], reply[1::2], strict=False))
    flags = set(str(fields.get("flags", "")).split(","))
    try:
        address = (str(fields["ip"]), int(fields["port"]))
        epoch = int(fields.get("config-epoch", 0))
    except (KeyError, ValueError):
        raise ValueError(f"not a master's description: {list(fields)}") from None
    return MasterAnswer(address, epoch,
                        usable="master" in flags and not flags & {"s_down", "o_down"},
                        failing_over="failover_in_progress" in flags)
