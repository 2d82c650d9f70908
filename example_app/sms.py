"""The demo's SMS gateway, run as an RQ job (`flask redis worker sms` with a
real Redis; at once, in the web process, on the embedded server).

There is no SMS provider in development: the job files the message in a
development outbox that the login page shows. The message holds a login code,
so it travels and rests only encrypted (Fernet, keyed by SECRET_KEY): never in
plain text in Redis, the job queue or a log."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from .extensions import redis_ext

OUTBOX_KEY = "demo:sms-outbox:"
OUTBOX_SECONDS = 600


def _fernet() -> Fernet:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    key = hashlib.sha256(b"flask-core-redis demo sms\0" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def deliver_sms(phone: str, sealed: str) -> None:
    """The job: put the (still sealed) message in the phone's dev outbox."""
    key = f"{redis_ext.settings.key_prefix}{OUTBOX_KEY}{phone}"
    redis_ext.client.set(key, sealed, ex=OUTBOX_SECONDS)


def last_message_to(phone: str) -> str | None:
    sealed = redis_ext.client.get(f"{redis_ext.settings.key_prefix}{OUTBOX_KEY}{phone}")
    if sealed is None:
        return None
    try:
        return _fernet().decrypt(sealed).decode()
    except InvalidToken:  # sealed under another SECRET_KEY
        return None
