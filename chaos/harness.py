"""The app the fault-injection run serves under gunicorn: the demo
(``example_app``, its Socket.IO presence included) with a few JSON endpoints
that the load driver calls and the run reads back. Every endpoint goes
through the demo's ``redis_ext``: the plugins, the shared client, RQ.

    gunicorn -k gthread -w 3 'chaos.harness:create_app()'
    flask --app 'chaos.harness:create_app()' redis worker chaos
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, request

from example_app import create_app as create_demo
from example_app.extensions import redis_ext
from flask_core_redis.integrations.queues import queue
from flask_core_redis.plugins.cache import CachePlugin
from flask_core_redis.plugins.otp import OtpPlugin, OtpRateLimited
from flask_core_redis.plugins.presence import PresencePlugin

#: Every key the harness writes itself starts with this.
PREFIX = "chaos:"
CACHE_NAMESPACE = "chaos"
CACHE_TTL_SECONDS = 3600
#: The set where jobs record that they ran.
JOBS_DONE = f"{PREFIX}jobs-done"
QUEUE = "chaos"

endpoints = Blueprint("chaos", __name__, url_prefix="/chaos")


def create_app() -> Flask:
    app = create_demo()
    app.register_blueprint(endpoints)
    return app


def incr_key(token: str) -> str:
    return f"{PREFIX}incr:{token}"


def shard_key(tag: str, token: str) -> str:
    """A key in the hash slot of ``tag``: a writer confined to one shard."""
    return f"{PREFIX}{{{tag}}}:{token}"


def job_id(token: str) -> str:
    return f"chaos-{token}"


def record_job(token: str) -> None:
    """The job: it ran (run by `flask redis worker chaos`)."""
    redis_ext.client.sadd(JOBS_DONE, token)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400)
    return body


@endpoints.put("/cache/<key>")
def cache_set(key: str) -> dict[str, Any]:
    """A cache write, and whether Redis has it right after (False: the
    fail-open cache skipped it, or its read back failed open too)."""
    cache, value = redis_ext.plugin(CachePlugin), _body()["value"]
    cache.set(key, value, ttl=CACHE_TTL_SECONDS, namespace=CACHE_NAMESPACE)
    return {"stored": cache.get(key, namespace=CACHE_NAMESPACE) == value}


@endpoints.get("/cache/<key>")
def cache_get(key: str) -> dict[str, Any]:
    return {"value": redis_ext.plugin(CachePlugin).get(key, namespace=CACHE_NAMESPACE)}


@endpoints.post("/incr/<token>")
def incr(token: str) -> dict[str, Any]:
    """One INCR of a key of its own: 2 afterwards means it ran twice."""
    return {"value": redis_ext.client.incr(incr_key(token))}


@endpoints.post("/incr-wait/<token>")
def incr_wait(token: str) -> tuple[dict[str, Any], int]:
    """An INCR that waits until a replica has it (WAIT, on the same
    connection): acknowledged only once it would survive a failover. Not on
    Cluster, whose pipelines cannot send WAIT."""
    pipe = redis_ext.client.pipeline(transaction=False)
    pipe.incr(incr_key(token))
    pipe.wait(1, 500)
    value, replicas = pipe.execute()
    if replicas < 1:
        return {"value": value, "error": "no replica has it yet"}, 503
    return {"value": value}, 200


@endpoints.post("/shard/<tag>/<token>")
def shard_write(tag: str, token: str) -> dict[str, Any]:
    redis_ext.client.set(shard_key(tag, token), "1")
    return {"ok": True}


@endpoints.post("/otp/<phone>")
def otp_issue(phone: str) -> tuple[dict[str, Any], int]:
    """Issue a code and hand it back: the harness stands in for the SMS
    gateway (the demo files it, encrypted, for the login page instead)."""
    try:
        return {"code": redis_ext.plugin(OtpPlugin).issue(phone)}, 200
    except OtpRateLimited as limited:
        return {"error": str(limited)}, 429


@endpoints.post("/otp/<phone>/check")
def otp_check(phone: str) -> dict[str, Any]:
    result = redis_ext.plugin(OtpPlugin).check(phone, str(_body()["code"]))
    return {"status": result.status, "attempts_left": result.attempts_left}


@endpoints.post("/jobs/<token>")
def enqueue(token: str) -> dict[str, Any]:
    job = queue(redis_ext, QUEUE).enqueue(record_job, token, job_id=job_id(token))
    return {"id": job.id}


@endpoints.get("/presence")
def online() -> dict[str, Any]:
    return {"online": redis_ext.plugin(PresencePlugin).online_users(limit=10_000)}


# Reading the stores back, once the load has stopped ---------------------------

@endpoints.post("/cache/read")
def cache_read() -> dict[str, Any]:
    """Which of ``keys`` the cache holds with the value written (the key)."""
    keys = [str(key) for key in _body()["keys"]]
    found = redis_ext.plugin(CachePlugin).get_many(keys, namespace=CACHE_NAMESPACE)
    return {"present": [key for key in keys if found.get(key) == key]}


@endpoints.post("/incr/read")
def incr_read() -> dict[str, Any]:
    """The value of each token's INCR key (0 when missing)."""
    tokens = [str(token) for token in _body()["tokens"]]
    pipe = redis_ext.client.pipeline(transaction=False)
    for token in tokens:
        pipe.get(incr_key(token))
    return {"values": [int(value or 0) for value in pipe.execute()]}


@endpoints.post("/jobs/read")
def jobs_read() -> dict[str, Any]:
    """The jobs that ran, and those RQ holds as failed: they raised (their
    own write met an outage), or their worker lost Redis while they ran."""
    job_queue = queue(redis_ext, QUEUE)
    job_queue.started_job_registry.cleanup()  # abandoned jobs -> failed
    failed = job_queue.failed_job_registry.get_job_ids()
    return {"done": sorted(redis_ext.client.smembers(JOBS_DONE)),
            "failed": [name.removeprefix(job_id("")) for name in failed]}
