"""Nothing secret or unbounded reaches telemetry: hostile keys, values,
namespaces, user and connection ids, phone numbers and codes go through
every plugin, sync and async, and no metric attribute, span name, span
attribute, span event or status holds any of them, nor the password; the
series recorded stay as many whatever the inputs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_core_redis.plugins.otp import OtpRateLimited
from flask_core_redis.plugins.presence import TooManyConnections

from .conftest import ACL_PASSWORD, ACL_USER

pytestmark = pytest.mark.integration

#: Text no attribute may hold: long enough not to match a word by chance.
hostile = st.text(min_size=6, max_size=40).filter(lambda text: text.strip() == text
                                                  and "\0" not in text)
phones = st.integers(min_value=2_000_000_000, max_value=9_999_999_999).map(lambda n: f"+1{n}")
codes = st.integers(min_value=0, max_value=999_999).map(lambda n: f"{n:06d}")


def exercise(ext: Any, text: str, phone: str, code: str) -> None:
    """Every plugin operation, with ``text`` wherever the caller chooses a
    name or a value, sync then async."""
    cache, presence, otp = ext.cache, ext.presence, ext.otp
    cache.set(text, {"secret": text}, namespace=text)
    cache.get(text, namespace=text)
    cache.get_many([text, text + "!"], namespace=text)
    cache.get_or_set(text + "?", lambda: text, namespace=text)
    cache.delete(text, namespace=text)
    cache.invalidate_namespace(text)
    for call in (lambda: presence.connect(text, text), lambda: presence.disconnect(text, text),
                 lambda: presence.mark_online(text, connection_id=text)):
        with contextlib.suppress(ValueError, TooManyConnections):
            call()
    presence.sweep()
    with contextlib.suppress(OtpRateLimited):
        otp.store_otp(phone, code)
    otp.check(phone, code[::-1])
    otp.verify_otp(phone, code)

    async def async_forms() -> None:
        await cache.aset(text, text, namespace=text)
        await cache.aget(text, namespace=text)
        await cache.aget_or_set(text + "?", lambda: text, namespace=text)
        with contextlib.suppress(ValueError, TooManyConnections):
            await presence.aconnect(text, text + "a")
        await otp.acheck(phone, code)

    asyncio.run(async_forms())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=hostile, phone=phones, code=codes)
def test_no_input_and_no_secret_reaches_an_attribute(otel, make_app, auth_server, text,
                                                      phone, code):
    app, ext = _app(make_app, auth_server)
    with app.app_context():
        exercise(ext, text, phone, code)
    forbidden = [text, phone, phone[1:], code, ACL_PASSWORD, ACL_USER + ":"]
    for where, name, value in otel.every_attribute():
        shown = str(value)
        for secret in forbidden:
            assert secret not in shown, f"{where} {name}={shown!r} holds {secret!r}"
    # A handful per instrument, whatever the inputs: bounded cardinality.
    # (redis-py's own name each pool it makes, and each example makes an app.)
    series = {(name, tuple(sorted(point.items()))) for name, _, point in _series(otel)
              if name.startswith("flask_core_redis.")}
    assert len(series) < 150, sorted(series)[:20]


def _app(make_app: Any, server: Any) -> tuple[Any, Any]:
    return make_app({
        "REDIS_URL": f"redis://{ACL_USER}:{ACL_PASSWORD}@{server.address}",
        "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}:", "REDIS_OTEL": True,
        "REDIS_OTP_MAX_ATTEMPTS": 3, "REDIS_PRESENCE_MAX_CONNECTIONS": 1})


def _series(otel: Any) -> list[tuple[str, None, dict[str, Any]]]:
    return [(name, None, dict(point.attributes or {}))
            for name, metric in otel.metrics().items() for point in metric.data.data_points]


def test_undeclared_attributes_are_refused_and_unknown_values_become_other(otel):
    from flask_core_redis.telemetry import Telemetry

    counter = Telemetry(True, "REDIS").counter("probe.calls", "{call}", "A probe",
                                                {"result": ("hit", "miss"), "fast": bool})
    counter.add(1, result="hit", fast=True)
    counter.add(1, result="user-42", fast="yes")
    with pytest.raises(ValueError, match="declares no attribute 'user'"):
        counter.add(1, user="42")
    points = {tuple(sorted(attributes.items())): point.value
              for attributes, point in otel.points("flask_core_redis.probe.calls")}
    assert points == {
        (("fast", True), ("registration", "REDIS"), ("result", "hit")): 1,
        (("fast", "other"), ("registration", "REDIS"), ("result", "other")): 1,
    }


def test_the_switch_without_opentelemetry_installed_says_what_to_install(make_app,
                                                                        monkeypatch):
    import importlib.util

    from flask_core_redis import ConfigurationError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "opentelemetry" else real(name, *args))
    with pytest.raises(ConfigurationError, match=r"REDIS_OTEL is on.*flask-core-redis\[otel\]"):
        make_app({"REDIS_URL": "memory://otel-missing", "REDIS_OTEL": True})


def test_a_counter_is_added_to_and_a_histogram_recorded_in(otel):
    from flask_core_redis.telemetry import Telemetry

    telemetry = Telemetry(True, "REDIS")
    counter = telemetry.counter("probe.count", "{call}", "A probe")
    histogram = telemetry.histogram("probe.duration", "s", "A probe")
    with pytest.raises(TypeError, match=r"probe\.count is a counter: add"):
        counter.record(1.0)
    with pytest.raises(TypeError, match=r"probe\.duration is a histogram: record"):
        histogram.add(1)


def test_spans_are_made_where_the_api_keeps_no_global_provider(monkeypatch):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from flask_core_redis.telemetry import instruments

    monkeypatch.setattr(instruments, "_tracing_on", False)
    monkeypatch.delattr(trace, "_TRACER_PROVIDER")
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())
    assert instruments._tracing()
