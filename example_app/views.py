"""The demo's pages and JSON endpoints."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_socketio import SocketIO
from werkzeug.wrappers import Response

from flask_core_redis.integrations.queues import queue
from flask_core_redis.plugins.cache import CachePlugin
from flask_core_redis.plugins.otp import (
    OtpPlugin,
    OtpRateLimited,
    OtpUnavailable,
    normalize_phone,
)
from flask_core_redis.plugins.presence import PresencePlugin

from .extensions import redis_ext
from .sms import deliver_sms, last_message_to, seal

SOCKET_IO_CLIENT = (Path(__file__).resolve().parent.parent / "node_modules" /
                    "socket.io-client" / "dist" / "socket.io.min.js")
PROFILE_COMPUTE_SECONDS = 0.3
NOT_A_PHONE_NUMBER = "That is not a phone number: use digits, e.g. +1 555 010 9988."
CODES_UNAVAILABLE = "Login codes are unavailable right now. Please try again in a minute."


def masked(phone: str) -> str:
    """``+15550109988`` -> ``+15550•••88``: enough to tell people apart."""
    return phone[:-6] + "•••" + phone[-2:] if len(phone) > 8 else phone


def register_views(app: Flask, socketio: SocketIO) -> None:
    app.jinja_env.filters["masked"] = masked
    app.context_processor(_redis_panel)

    @app.get("/")
    def index() -> str:
        user = session.get("user")
        if not user:
            phone = session.get("pending_phone")
            dev_sms = last_message_to(phone) if phone else None
            return render_template("login.html", phone=phone, dev_sms=dev_sms)
        return render_template("dashboard.html", user=user, online=_online_users())

    @app.post("/login/code")
    def send_code() -> Response:
        try:
            phone = normalize_phone(request.form.get("phone", ""))
        except ValueError:
            return _back_with_error(NOT_A_PHONE_NUMBER)
        try:
            code = redis_ext.plugin(OtpPlugin).issue(phone)
        except OtpRateLimited as limited:
            return _back_with_error(_wait_message(limited))
        except OtpUnavailable:
            return _back_with_error(CODES_UNAVAILABLE)
        queue(redis_ext, "sms").enqueue(deliver_sms, phone, seal(f"Your login code is {code}"))
        session["pending_phone"] = phone
        flash("We sent you a code. It is valid for 5 minutes.", "info")
        return redirect(url_for("index"))

    @app.post("/login/verify")
    def verify_code() -> Response:
        phone = session.get("pending_phone")
        if not phone:
            return redirect(url_for("index"))
        code = request.form.get("code", "").strip()
        try:
            result = redis_ext.plugin(OtpPlugin).check(phone, code)
        except ValueError:
            return _back_with_error("Enter the 6 digits of the code.")
        except OtpUnavailable:
            return _back_with_error(CODES_UNAVAILABLE)
        if not result.ok:
            return _back_with_error(_explain(result.status, result.attempts_left))
        session.pop("pending_phone")
        session["user"] = phone
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("index"))

    @app.get("/profile")
    def profile() -> str:
        user = session.get("user") or abort(401)
        key = f"profile:{user}"
        cache = redis_ext.plugin(CachePlugin)
        started = time.perf_counter()
        data = cache.get(key, namespace="profiles")
        hit = data is not None
        if not hit:
            data = cache.get_or_set(key, lambda: _build_profile(user), ttl=120,
                                    namespace="profiles")
        elapsed_ms = (time.perf_counter() - started) * 1000
        return render_template("profile.html", user=user, data=data, hit=hit,
                               elapsed_ms=elapsed_ms)

    @app.post("/profile/invalidate")
    def invalidate() -> Response:
        redis_ext.plugin(CachePlugin).invalidate_namespace("profiles")
        flash("Every cached profile was invalidated (one INCR).", "info")
        return redirect(url_for("profile"))

    @app.post("/api/broadcast")
    def broadcast() -> dict[str, Any]:
        """Send a JSON body to every Socket.IO client of every server."""
        session.get("user") or abort(401)
        socketio.emit("broadcast", request.get_json(silent=True) or {})
        return {"sent": True}

    @app.get("/api/online")
    def online() -> dict[str, Any]:
        return {"online": [masked(user) for user in _online_users()]}

    @app.get("/static/vendor/socket.io.min.js")
    def socket_io_client() -> Response:
        if not SOCKET_IO_CLIENT.exists():  # npm install not run: the page polls
            abort(404)
        return send_file(SOCKET_IO_CLIENT, mimetype="text/javascript")


def _back_with_error(message: str) -> Response:
    flash(message, "error")
    return redirect(url_for("index"))


def _wait_message(limited: OtpRateLimited) -> str:
    seconds = math.ceil(limited.retry_after)
    if limited.reason == "cooldown":
        return f"A code was sent moments ago. You can ask for a new one in {seconds} s."
    return f"Too many codes were sent to this phone. Try again in {seconds} s."


def _explain(status: str, attempts_left: int) -> str:
    if status == "locked":
        return "Too many wrong codes: this code is locked. Ask for a new one."
    if status == "expired":
        return "This code has expired. Ask for a new one."
    return f"That code is not right. {attempts_left} attempts left."


def _build_profile(user: str) -> dict[str, Any]:
    time.sleep(PROFILE_COMPUTE_SECONDS)  # stands in for a slow query
    return {"phone": masked(user), "built_at": time.strftime("%H:%M:%S"),
            "badges": ["early adopter", "verified phone"]}


def _online_users() -> list[str]:
    return redis_ext.plugin(PresencePlugin).online_users(limit=50)


def _redis_panel() -> dict[str, Any]:
    """The Redis panel as the page renders it: configuration only, so that the
    panel adds no Redis call to a page. Its script (redis-panel.js) fills in
    the server's state from the health route."""
    settings = redis_ext.settings
    return {"panel": {"mode": settings.mode, "address": settings.address,
                      "plugins": sorted(redis_ext.plugins),
                      "health_url": settings.health_route}}
