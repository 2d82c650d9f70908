"""The app a worker subprocess loads: `flask --app tests.queue_app redis worker`."""

import os

from flask import Flask, jsonify

from flask_core_redis import CoreRedis
from flask_core_redis.integrations.queues import queue

from . import jobs

redis_ext = CoreRedis()


def create_app() -> Flask:
    app = Flask("queue-test-app")
    app.config.update(SECRET_KEY="s", REDIS_URL=os.environ["REDIS_URL"])
    redis_ext.init_app(app)

    @app.post("/jobs/add/<int:a>/<int:b>")
    def enqueue_add(a, b):
        job = queue(redis_ext, "math").enqueue(jobs.add, a, b)
        return jsonify(id=job.id)

    @app.post("/jobs/slow")
    def enqueue_slow():
        return jsonify(id=queue(redis_ext, "math").enqueue(jobs.slow, 1.5).id)

    @app.post("/jobs/app-name")
    def enqueue_app_name():
        return jsonify(id=queue(redis_ext, "math").enqueue(jobs.app_name).id)

    return app
