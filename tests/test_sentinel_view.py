"""What the sentinels say, read (announcements, answers), and what a watch
concludes from it (the view): pure rules, no server."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_core_redis.connection.sentinel.announcements import (
    Announcement,
    Kind,
    MasterAnswer,
    read_announcement,
    read_master_answer,
)
from flask_core_redis.connection.sentinel.view import (
    CONFIRMATION_SECONDS,
    FAILOVER_WAIT_SECONDS,
    MasterView,
)

OLD, NEW = ("127.0.0.1", 6379), ("127.0.0.1", 6380)
REPLICA = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379"


# What a failover of `mymaster` looks like on a sentinel's pub/sub (Redis 7.0).
@pytest.mark.parametrize(("channel", "data", "expected"), [
    ("+failover-state-send-slaveof-noone", REPLICA,
     Announcement(Kind.FAILOVER_STARTED, "mymaster")),
    ("+promoted-slave", REPLICA, Announcement(Kind.MOVED, "mymaster", NEW)),
    ("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380",
     Announcement(Kind.MOVED, "mymaster", NEW)),
    ("-failover-abort-no-good-slave", "master mymaster 127.0.0.1 6379",
     Announcement(Kind.FAILOVER_ABORTED, "mymaster")),
    ("+failover-end-for-timeout", "master mymaster 127.0.0.1 6379", None),  # after promotion
    ("+new-epoch", "7", Announcement(Kind.NEW_EPOCH, epoch=7)),
    ("+switch-master", "mymaster 127.0.0.1", None),  # cut short
    ("+promoted-slave", "slave 127.0.0.1:6380 127.0.0.1 6380", None),  # whose?
    ("+new-epoch", "seven", None),
])
def test_announcements_are_read_as_sentinels_write_them(channel, data, expected):
    assert read_announcement(channel, data) == expected


@given(st.sampled_from(["+failover-state-send-slaveof-noone", "+promoted-slave",
                        "+switch-master", "-failover-abort-not-elected",
                        "+failover-end-for-timeout", "+new-epoch", "+sdown"]),
       st.text() | st.binary() | st.integers() | st.none())
def test_any_message_reads_as_an_announcement_or_none_never_an_error(channel, data):
    announcement = read_announcement(channel, data)
    assert announcement is None or isinstance(announcement, Announcement)


def test_a_master_answer_says_where_from_which_epoch_and_whether_usable():
    fields = ["name", "mymaster", "ip", "127.0.0.1", "port", "6380", "flags", "master",
              "config-epoch", "3", "num-slaves", "1"]
    assert read_master_answer(fields) == MasterAnswer(NEW, 3, usable=True)
    down = [*fields[:6], "flags", "master,s_down", *fields[8:]]
    assert read_master_answer(down).usable is False
    for garbage in (["name", "mymaster", "flags", "master"], "OK", 7, None,
                    ["ip", "127.0.0.1", "port", "sixty"]):
        with pytest.raises(ValueError, match="not a master's description"):
            read_master_answer(garbage)


def confirmed(address=OLD, epoch=1, at=0.0):
    return MasterView().answered(MasterAnswer(address, epoch, True), at)


def test_a_confirmation_lasts_two_seconds_and_pings_extend_it():
    view = confirmed(at=10.0)
    assert view.vouches_for(OLD, 10.0 + CONFIRMATION_SECONDS - 0.01)
    assert not view.vouches_for(OLD, 10.0 + CONFIRMATION_SECONDS)
    assert not view.vouches_for(NEW, 10.5)
    assert view.confirmed(11.0).vouches_for(OLD, 12.5)


def test_from_the_start_of_a_failover_nothing_is_vouched_until_its_outcome():
    started = confirmed(at=10.0).announced(
        Announcement(Kind.FAILOVER_STARTED, "mymaster"), "mymaster", 10.1, 1).confirmed(10.2)
    assert not started.vouches_for(OLD, 10.3)
    assert not started.vouches_for(NEW, 10.3)
    promoted = started.announced(Announcement(Kind.MOVED, "mymaster", NEW), "mymaster", 11.0, 2)
    assert promoted.vouches_for(NEW, 11.1) and not promoted.vouches_for(OLD, 11.1)
    ended = started.announced(Announcement(Kind.FAILOVER_ABORTED, "mymaster"), "mymaster",
                              11.0, 2)
    assert ended.vouches_for(OLD, 11.1)  # aborted: the old master stays
    # No outcome heard: the old master again once the wait is over.
    assert not started.confirmed(14.0).vouches_for(OLD, 10.1 + FAILOVER_WAIT_SECONDS - 0.01)
    assert started.confirmed(15.0).vouches_for(OLD, 10.1 + FAILOVER_WAIT_SECONDS)


def test_announcements_about_another_master_change_nothing():
    view = confirmed(at=10.0)
    for kind in Kind:
        other = Announcement(kind, "other", NEW, 9)
        assert view.announced(other, "mymaster", 10.1, 9) == view


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50),
       st.booleans())
def test_only_a_newer_configuration_moves_the_master_back(answered_epoch, known_epoch,
                                                          through_a_move):
    """After a move (announced: the promotion comes before every sentinel
    switches), a sentinel that still names the old master is not believed
    unless its configuration is newer (a later failover back)."""
    view = confirmed(OLD, epoch=known_epoch, at=10.0)
    if through_a_move:
        view = view.announced(Announcement(Kind.MOVED, "mymaster", NEW), "mymaster", 10.5,
                              known_epoch)
    current = view.address
    other = OLD if current == NEW else NEW
    after = view.answered(MasterAnswer(other, answered_epoch, True), 11.0)
    if answered_epoch <= view.epoch:
        assert after == view
    else:
        assert after.address == other and after.vouches_for(other, 11.5)


def test_the_leader_mid_failover_names_the_old_master_and_moves_nothing_back():
    """Between +promoted-slave and +switch-master the leader answers with
    the master it is replacing, the failover's epoch and the flag
    failover_in_progress (as Redis 7.0 does): the view stays on the new
    master. Before the promotion, that answer holds connections back."""
    leader = ["name", "mymaster", "ip", "127.0.0.1", "port", "6379",
              "flags", "master,failover_in_progress,force_failover", "config-epoch", "1"]
    answer = read_master_answer(leader)
    assert answer == MasterAnswer(OLD, 1, usable=True, failing_over=True)
    promoted = confirmed(OLD, epoch=0, at=10.0).announced(
        Announcement(Kind.MOVED, "mymaster", NEW), "mymaster", 10.5, 1)
    assert promoted.answered(answer, 10.6) == promoted
    assert promoted.answered(answer, 10.6).vouches_for(NEW, 10.7)
    before = confirmed(OLD, epoch=0, at=10.0).answered(answer, 10.2)
    assert not before.vouches_for(OLD, 10.3)
    assert before.confirmed(14.0).vouches_for(OLD, 10.2 + FAILOVER_WAIT_SECONDS)


def test_an_answer_that_holds_the_master_down_confirms_nothing():
    view = confirmed(at=10.0)
    assert view.answered(MasterAnswer(OLD, 5, usable=False), 11.5) == view
    assert not MasterView().answered(MasterAnswer(OLD, 5, usable=False), 0.0).usable(0.1)
