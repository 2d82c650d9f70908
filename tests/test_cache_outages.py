"""The cache with Redis unreachable, hung or refusing: what fails open, what
does not, and what an outage costs."""

import logging

import pytest
import redis

from flask_core_redis.plugins.cache.scripts import Names


def unavailable_warnings(caplog):
    return [record for record in caplog.records if record.levelno == logging.WARNING
            and record.getMessage().startswith("cache: Redis unavailable")]


def test_a_reply_error_is_raised_not_taken_for_an_outage(mode_app, caplog):
    caplog.set_level(logging.INFO, "flask_core_redis")
    app, ext = mode_app()
    with app.app_context():
        cache = ext.cache
        version = Names(cache._tag("broken"), "k").version
        ext.client.hset(version, "not", "a version")  # every script's GET of it: WRONGTYPE
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.set("k", 1, namespace="broken")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.get_or_set("k", lambda: 1, namespace="broken")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            cache.invalidate_namespace("broken")
        assert cache.get_or_set("k", lambda: "fine", namespace="elsewhere") == "fine"
    assert unavailable_warnings(caplog) == []
