"""The demo's pages and JSON endpoints."""

from __future__ import annotations

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

from flask_core_redis.plugins.otp import OtpRateLimited, normalize_phone

from . import redis_ext
from .sms import deliver_sms, last_message_to, seal

SOCKET_IO_CLIENT = (Path(__file__).resolve().parent.parent / "node_modules" /
                    "socket.io-client" / "dist" / "socket.io.min.js")
PROFILE_COMPUTE_SECONDS = 0.3


def masked(phone: str) -> str:
    """``+15550109988`` -> ``+15550•••88``: enough to tell people apart."""
    return phone[:-6] + "•••" + phone[-2:] if len(phone) > 8 else phone


def register_views(app: Flask, socketio: SocketIO) -> None:
    app.jinja_env.filters["masked"] = masked

    @app.get("/")
    def index() -> str:
        user = session.get("user")
        if not user:
            phone = session.get("pending_phone")
            dev_sms = last_message_to(phone) if phone else None
            return render_template("login.html", phone=phone, dev_sms=dev_sms,
                                   panel=_panel())
        return render_template("dashboard.html", user=user, panel=_panel(),
                               online=redis_ext.presence.online_users(limit=50))

    @app.post("/login/code")
    def send_code() -> Response:
        try:
            phone = normalize_phone(request.form.get("phone", ""))
            code = redis_ext.otp.issue(phone)
        except ValueError as error:
            flash(str(error).split(":")[0] + ": use digits, e.g. +1 555 010 9988", "error")
            return redirect(url_for("index"))
        except OtpRateLimited as error:
            flash(f"Please wait: {error}.", "error")
            return redirect(url_for("index"))
        redis_ext.queue("sms").enqueue(deliver_sms, phone, seal(f"Your login code is {code}"))
        session["pending_phone"] = phone
        flash("We sent you a code. It is valid for 5 minutes.", "info")
        return redirect(url_for("index"))

    @app.post("/login/verify")
    def verify_code() -> Response:
        phone = session.get("pending_phone")
        if not phone:
            return redirect(url_for("index"))
        try:
            result = redis_ext.otp.check(phone, request.form.get("code", "").strip())
        except ValueError:
            flash("Enter the 6 digits of the code.", "error")
            return redirect(url_for("index"))
        if result.ok:
            session.pop("pending_phone")
            session["user"] = phone
            return redirect(url_for("index"))
        flash(_explain(result.status, result.attempts_left), "error")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("index"))

    @app.get("/profile")
    def profile() -> str:
        user = session.get("user") or abort(401)
        key = f"profile:{user}"
        started = time.perf_counter()
        data = redis_ext.cache.get(key, namespace="profiles")
        hit = data is not None
        if not hit:
            data = redis_ext.cache.get_or_set(key, lambda: _build_profile(user), ttl=120,
                                              namespace="profiles")
        elapsed_ms = (time.perf_counter() - started) * 1000
        return render_template("profile.html", user=user, data=data, hit=hit,
                               elapsed_ms=elapsed_ms, panel=_panel())

    @app.post("/profile/invalidate")
    def invalidate() -> Response:
        redis_ext.cache.invalidate_namespace("profiles")
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
        return {"online": [masked(u) for u in redis_ext.presence.online_users(limit=50)]}

    @app.get("/static/vendor/socket.io.min.js")
    def socket_io_client() -> Response:
        if not SOCKET_IO_CLIENT.exists():  # npm install not run: the page polls
            abort(404)
        return send_file(SOCKET_IO_CLIENT, mimetype="text/javascript")


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


def _panel() -> dict[str, Any]:
    report = redis_ext.health()
    report["plugin_names"] = sorted(redis_ext.plugins)
    return report
