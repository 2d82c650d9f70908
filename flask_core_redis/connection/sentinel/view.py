"""What a watch knows of one master at a moment, and how each thing the
sentinels say changes it. Pure: no I/O, no clock of its own (``now`` and
``asked_at`` are ``time.monotonic()`` seconds, given)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .announcements import Address, Announcement, Kind, MasterAnswer

#: How long a confirmation lasts: a connection to the master may be handed
#: out for this long after a sentinel last vouched for it (answered where the
#: master is, or answered a PING on a subscription that would have carried
#: any announcement made before it).
CONFIRMATION_SECONDS = 2.0
#: How long a failover may stay under way without an outcome before handing
#: out connections to the old master again: a promotion takes about a second
#: (the leader reads the promoted replica's role once a second).
FAILOVER_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class MasterView:
    """The master's address and the configuration epoch it comes from; until
    when it is confirmed; and until when a failover under way holds back
    every connection (0: none under way)."""

    address: Address | None = None
    epoch: int = -1
    confirmed_until: float = 0.0
    paused_until: float = 0.0

    def vouches_for(self, address: Address | None, now: float) -> bool:
        """Whether a connection to ``address`` may be handed out at ``now``."""
        return (address is not None and address == self.address
                and self.paused_until <= now < self.confirmed_until)

    def usable(self, now: float) -> bool:
        """Whether the view names a master that may be used at ``now``."""
        return self.vouches_for(self.address, now)

    def unconfirmed(self) -> MasterView:
        """The same master, confirmed no longer (a forked child's, say)."""
        return dataclasses.replace(self, confirmed_until=0.0)

    def confirmed(self, asked_at: float) -> MasterView:
        """Confirmed by a sentinel asked at ``asked_at`` that had nothing new."""
        until = max(self.confirmed_until, asked_at + CONFIRMATION_SECONDS)
        return dataclasses.replace(self, confirmed_until=until)

    def answered(self, answer: MasterAnswer, asked_at: float) -> MasterView:
        """After ``answer``, asked at ``asked_at``. A sentinel failing the
        master over names the master it is replacing: that confirms nothing,
        and holds connections back as the failover's announcement does. An
        answer that holds the master down confirms nothing either. One that
        names another master moves the view only if its configuration is
        newer than the view's (a sentinel that has not heard of the last
        failover yet names the old master with an older epoch)."""
        if answer.failing_over:
            if self.address in (None, answer.address):  # it is replacing this master
                return dataclasses.replace(self, paused_until=max(
                    self.paused_until, asked_at + FAILOVER_WAIT_SECONDS))
            return self
        if not answer.usable:
            return self
        if answer.address == self.address:
            return dataclasses.replace(self.confirmed(asked_at),
                                       epoch=max(self.epoch, answer.epoch))
        if answer.epoch <= self.epoch:
            return self
        return dataclasses.replace(self, address=answer.address, epoch=answer.epoch,
                                   confirmed_until=asked_at + CONFIRMATION_SECONDS)

    def announced(self, announcement: Announcement, master: str, now: float,
                  latest_epoch: int) -> MasterView:
        """After ``announcement``, heard at ``now`` on a live subscription;
        ``latest_epoch`` is the newest epoch any sentinel has announced."""
        if announcement.master != master:
            return self
        if announcement.kind is Kind.FAILOVER_STARTED:
            return dataclasses.replace(self, paused_until=now + FAILOVER_WAIT_SECONDS)
        if announcement.kind is Kind.FAILOVER_ABORTED:
            return dataclasses.replace(self, paused_until=0.0)
        if announcement.kind is Kind.MOVED and announcement.address is not None:
            # A failover takes a new epoch: the new address is newer than
            # anything a sentinel said of the old one.
            epoch = self.epoch if announcement.address == self.address else max(
                self.epoch + 1, latest_epoch)
            return MasterView(announcement.address, epoch,
                              max(self.confirmed_until, now + CONFIRMATION_SECONDS), 0.0)
        return self
