"""The fault-injection run's accounting (chaos/report.py): each figure of
the README's failure tables is counted from the load driver's records as it
says, on records made up for the purpose."""

import math

from chaos.report import Stores, Window, figures, percentile, presence_notes, traffic_table

WINDOW = Window("cluster", "3 retries (default)", "master killed", before=100.0,
                started=103.0, lifted=106.0, ends=110.0)


def call(at, op, outcome="ok", token="", ms=10.0, detail=None):
    return {"at": at, "ms": ms, "op": op, "outcome": outcome, "token": token,
            "detail": detail}


def flow(at, code="123456", wrong=0, wrong_unknown=0, answers=("ok", "invalid")):
    return {"at": at, "phone": "+15550000000", "code": code, "wrong": wrong,
            "wrong_unknown": wrong_unknown, "answers": list(answers)}


def records(calls=(), flows=(), checks=()):
    return {"calls": list(calls), "flows": list(flows), "checks": list(checks)}


def stores(cache=(), incr=None, jobs=None, failed=()):
    return Stores(set(cache), dict(incr or {}), None if jobs is None else set(jobs), 0,
                  set(failed))


def test_errors_are_counted_by_kind_within_the_window_only():
    made = records([call(101, "incr", "503"), call(104, "incr", "timeout", ms=10_000),
                    call(104.5, "cache_get", "error"), call(105, "otp_check", "503"),
                    call(99, "incr", "503"), call(111, "incr", "error"),
                    call(104, "incr"), call(107, "cache_get")])
    result = figures(WINDOW, made, stores(), 5)
    assert result.errors == {"503": 2, "error": 1, "timeout": 1}
    assert result.failed_by_request == {"incr": 2, "cache_get": 1, "otp_check": 1}
    assert result.served == 2


def test_errors_until_is_the_end_of_the_last_failed_call_after_the_fault():
    made = records([call(104, "incr", "503", ms=500), call(107, "incr", "error", ms=2000),
                    call(108, "incr")])
    assert figures(WINDOW, made, stores(), 5).back_to_zero_s == 107 + 2 - 103
    assert figures(WINDOW, records([call(104, "incr")]), stores(), 5).back_to_zero_s is None


def test_latency_is_split_by_phase():
    made = records([call(101, "incr", ms=1), call(102, "incr", ms=3),
                    call(104, "incr", ms=900), call(107, "incr", ms=5)])
    latency = figures(WINDOW, made, stores(), 5).latency
    assert latency == {"before": (1, 3), "during": (900, 900), "after": (5, 5)}


def test_a_write_is_lost_only_if_it_was_acknowledged_and_is_not_there():
    made = records([call(104, "cache_set", token="kept"), call(104, "cache_set", token="gone"),
                    call(104, "cache_set", "503", token="refused"),
                    call(104, "job", token="ran"), call(104, "job", token="never"),
                    call(104, "job", "timeout", token="unknown")])
    result = figures(WINDOW, made, stores(cache={"kept"}, jobs={"ran"}), 5)
    assert result.lost["cache"] == 1 and result.lost["queue"] == 1


def test_a_cache_write_redis_did_not_take_is_skipped_not_lost():
    made = records([call(104, "cache_set", token="skipped", detail="not stored"),
                    call(104, "cache_set", token="stored-then-lost"),
                    call(104, "cache_set", token="kept")])
    result = figures(WINDOW, made, stores(cache={"kept"}), 5)
    assert (result.cache_skipped, result.lost["cache"]) == (1, 1)


def test_a_job_rq_holds_as_failed_is_counted_apart_from_a_lost_one():
    made = records([call(104, "job", token="ran"), call(104, "job", token="raised"),
                    call(104, "job", token="vanished")])
    result = figures(WINDOW, made, stores(jobs={"ran"}, failed={"raised"}), 5)
    assert (result.jobs_failed, result.lost["queue"]) == (1, 1)


def test_a_queue_the_topology_has_not_is_not_a_loss():
    made = records([call(104, "job", token="a")])
    assert figures(WINDOW, made, stores(), 5).lost["queue"] is None


def test_incr_keys_tell_lost_twice_and_applied_though_failed():
    made = records([call(104, "incr", token="once"), call(104, "incr", token="twice"),
                    call(104, "incr", "503", token="ran-anyway"),
                    call(104, "incr", "503", token="never-ran"),
                    call(104, "incr", token="lost")])
    values = {"once": 1, "twice": 2, "ran-anyway": 1}
    result = figures(WINDOW, made, stores(incr=values), 5)
    assert (result.lost["incr"], result.incr_twice, result.incr_applied_unacked) == (1, 1, 1)


def test_otp_figures():
    made = records(flows=[
        flow(104),                                           # as it should be
        flow(104, answers=["invalid", "invalid"]),           # acknowledged, then gone: lost
        flow(104, answers=["after-error:invalid", "invalid"]),  # may have been used: not lost
        flow(104, wrong=1, wrong_unknown=1, answers=["invalid", "invalid"]),  # unknown
        flow(104, answers=["ok", "after-error:ok"]),         # passed twice
        flow(104, wrong=5, answers=["ok", "invalid"]),       # passed past the limit
        flow(104, wrong=5, answers=["locked", "locked"]),    # as it should be
        flow(99, answers=["ok", "ok"]),                      # another window
    ])
    result = figures(WINDOW, made, stores(), 5)
    assert (result.lost["otp"], result.otp_double, result.otp_over_limit) == (1, 1, 1)


def test_the_presence_check_of_the_fault_is_reported():
    check = {"label": "master killed", "answered": True, "ghosts": ["+1"], "missing": [],
             "connected": 9}
    other = {**check, "label": "restart", "ghosts": []}
    result = figures(WINDOW, records(checks=[other, check]), stores(), 5)
    assert result.presence == check


def test_the_confined_writer_is_reported_apart_from_the_app():
    made = records([call(104, "shard", "503"), call(104, "shard", ms=7), call(104, "incr")])
    result = figures(WINDOW, made, stores(incr={"": 1}), 5)
    assert result.served == 1 and result.errors["503"] == 0
    assert result.shard["errors"] == 1


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50, 99)
    assert percentile([7.0], 0.99) == 7.0 and math.isnan(percentile([], 0.5))


def test_a_failed_fault_is_shown_failed():
    failed = Window("sentinel", "3 retries (default)", "paused 3 s", 1, 2, failed="boom")
    assert "run failed: boom" in "\n".join(traffic_table([figures(failed, records(),
                                                                  stores(), 5)]))


def test_a_broadcast_is_lost_when_a_client_connected_throughout_missed_it():
    made = records([call(104, "broadcast", token="b1", detail={"missed": 1, "of": 9}),
                    call(104, "broadcast", token="b2", detail={"missed": 0, "of": 9}),
                    call(104, "broadcast", token="b3", detail=None),  # too late to tell
                    call(104, "broadcast", "503", token="b4")])
    assert figures(WINDOW, made, stores(), 5).lost["broadcast"] == 1


class Keys:
    """A topology's keys and values, as codes_in_plain_text reads them."""

    def __init__(self, content):
        self.content = content

    def keys_and_values(self):
        return iter(self.content.items())


def test_a_code_beside_its_phone_is_found_and_random_digits_elsewhere_are_not():
    from chaos.run import codes_in_plain_text

    issued = records(flows=[{**flow(104, code="123456"), "phone": "+15550000001"},
                            {**flow(104, code="654321"), "phone": "+15550000002"}])
    clean = Keys({"{otp:+15550000001}:code": ["9f2c7e", "1700000000123"],
                  "cache:entry:ab123456cd": ["x123456y"],  # the digits, by chance
                  "{otp:+15550000002}:reply:00aa": ['["ok", 0]']})
    assert codes_in_plain_text(clean, issued) == 0
    leaked = Keys({"{otp:+15550000001}:code": ["123456"],
                   "sms-log": ["+15550000002: your code is 654321"],
                   "{otp:+15550000002}:code": ["123456"]})  # another phone's code
    assert codes_in_plain_text(leaked, issued) == 2


def test_incr_with_wait_is_counted_apart_and_only_where_it_ran():
    made = records([call(104, "incr_wait", token="kept"), call(104, "incr_wait", token="gone"),
                    call(104, "incr_wait", "503", token="refused")])
    result = figures(WINDOW, made, stores(incr={"kept": 1, "refused": 1}), 5)
    assert result.lost["incr_wait"] == 1 and result.lost["incr"] == 0
    assert figures(WINDOW, records([call(104, "incr")]), stores(), 5).lost["incr_wait"] is None


def test_each_user_a_presence_check_got_wrong_is_named_with_what_the_driver_knew():
    check = {"label": "master killed", "answered": True, "ghosts": ["+1"], "missing": ["+2"],
             "whereabouts": {"+1": "left 2.5 s before", "+2": "connected, joined 9.0 s before"},
             "connected": 5}
    result = figures(WINDOW, records(checks=[check]), stores(), 5)
    assert presence_notes([result]) == [
        "- after master killed (3 retries (default)), ghosts +1: left 2.5 s before",
        "- after master killed (3 retries (default)), missing +2: connected, joined 9.0 s before"]
