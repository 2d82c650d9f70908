"""The demo's page and endpoints: phone login with one-time codes (the OTP
plugin's ``aissue`` and ``acheck``) and the list of who is online
(``aonline_users``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from quart import (
    Quart,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from quart.typing import ResponseReturnValue

from flask_core_redis.plugins.otp import OtpRateLimited, OtpUnavailable, normalize_phone

from .extensions import redis_ext
from .phones import masked
from .sms import DevOutbox, SendSms

SOCKET_IO_CLIENT = (Path(__file__).resolve().parent.parent / "node_modules" /
                    "socket.io-client" / "dist" / "socket.io.min.js")
NOT_A_PHONE_NUMBER = "That is not a phone number: use digits, e.g. +1 555 010 9988."
CODES_UNAVAILABLE = "Login codes are unavailable right now. Please try again in a minute."


def register_views(app: Quart, send_sms: SendSms, outbox: DevOutbox | None) -> None:
    """The routes; ``outbox``, when given, is shown on the login page."""

    @app.get("/")
    async def index() -> str:
        user = session.get("user")
        if user:
            return await render_template("index.html", user=masked(user),
                                         online=await _online_users())
        phone = session.get("pending_phone")
        dev_sms = outbox.last_message_to(phone) if outbox and phone else None
        return await render_template("index.html", user=None, phone=phone, dev_sms=dev_sms)

    @app.post("/login/code")
    async def send_code() -> ResponseReturnValue:
        form = await request.form
        try:
            phone = normalize_phone(form.get("phone", ""))
        except ValueError:
            return await _back_with_error(NOT_A_PHONE_NUMBER)
        try:
            code = await redis_ext.otp.aissue(phone)
        except OtpRateLimited as limited:
            return await _back_with_error(_wait_message(limited))
        except OtpUnavailable:
            return await _back_with_error(CODES_UNAVAILABLE)
        await send_sms(phone, f"Your login code is {code}")
        session["pending_phone"] = phone
        await flash("We sent you a code. It is valid for 5 minutes.")
        return redirect(url_for("index"))

    @app.post("/login/verify")
    async def verify_code() -> ResponseReturnValue:
        phone = session.get("pending_phone")
        if not phone:
            return redirect(url_for("index"))
        code = (await request.form).get("code", "").strip()
        try:
            result = await redis_ext.otp.acheck(phone, code)
        except ValueError:
            return await _back_with_error("Enter the 6 digits of the code.")
        except OtpUnavailable:
            return await _back_with_error(CODES_UNAVAILABLE)
        if not result.ok:
            return await _back_with_error(_explain(result.status, result.attempts_left))
        session.pop("pending_phone")
        session["user"] = phone
        return redirect(url_for("index"))

    @app.post("/logout")
    async def logout() -> ResponseReturnValue:
        session.clear()
        return redirect(url_for("index"))

    @app.get("/api/online")
    async def online() -> dict[str, Any]:
        session.get("user") or abort(401)
        return {"online": await _online_users()}

    @app.get("/static/vendor/socket.io.min.js")
    async def socket_io_client() -> ResponseReturnValue:
        if not SOCKET_IO_CLIENT.exists():  # npm install not run: the page polls
            abort(404)
        return await send_file(SOCKET_IO_CLIENT, mimetype="text/javascript")


async def _online_users() -> list[str]:
    return [masked(user) for user in await redis_ext.presence.aonline_users(limit=50)]


async def _back_with_error(message: str) -> ResponseReturnValue:
    await flash(message, "error")
    return redirect(url_for("index"))


def _wait_message(limited: OtpRateLimited) -> str:
    why = "A code was sent moments ago" if limited.reason == "cooldown" else (
        "Too many codes were sent to this phone")
    return f"{why}. Ask again in {math.ceil(limited.retry_after)} s."


#: Why a code was refused, by the status ``acheck`` gives.
REFUSED = {"locked": "Too many wrong codes: ask for a new code.",
           "expired": "This code has expired: ask for a new one."}


def _explain(status: str, attempts_left: int) -> str:
    return REFUSED.get(status, f"Wrong code: {attempts_left} attempts left.")
