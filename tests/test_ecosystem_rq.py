"""RQ and rq-dashboard on the app's connection: a job enqueued through it
runs in a real worker process, and the dashboard shows it."""

import pytest
from flask import Flask, Response, request

from flask_core_redis import ConfigurationError
from flask_core_redis.integrations.queues import queue
from flask_core_redis.integrations.rq_dashboard import init_rq_dashboard

from . import jobs
from .servers import require_package
from .test_queues import run_worker, server_url

require_package("rq_dashboard")

pytestmark = [pytest.mark.ecosystem, pytest.mark.usefixtures("refuse_default_port")]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "sentinel"])
def test_the_dashboard_shows_a_job_that_a_worker_ran(request, mode, make_app, tmp_path):
    url = server_url(request, mode)
    app, ext = make_app({"REDIS_URL": url})
    init_rq_dashboard(ext, app)
    with app.app_context():
        job = queue(ext, "math").enqueue(jobs.add, 2, 3)
    web = app.test_client()
    queues = web.get("/rq/0/data/queues.json").get_json()["queues"]
    assert {"name": "math", "count": 1} in [
        {"name": q["name"], "count": q["count"]} for q in queues]
    page = web.get("/rq/")
    assert page.status_code == 200 and b"rq-dashboard" in page.data.lower()
    status, output = run_worker(url, tmp_path)
    assert status == 0, output[-2000:]
    shown = web.get(f"/rq/0/data/job/{job.id}.json").get_json()
    assert shown["status"] == "finished" and shown["result"] == 5
    assert web.get("/rq/1/data/queues.json").status_code == 404  # one instance: the app's
    with app.app_context():
        assert app.redis_conn is queue(ext, "math").connection  # the app's RQ connection


def test_memory_mode_shows_jobs_that_ran_as_enqueued(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    init_rq_dashboard(ext, app, url_prefix="/admin/rq")
    with app.app_context():
        job = queue(ext).enqueue(jobs.add, 20, 22)
    shown = app.test_client().get(f"/admin/rq/0/data/job/{job.id}.json").get_json()
    assert shown["status"] == "finished" and shown["result"] == 42


def test_cluster_is_refused_when_registered(make_app):
    app, ext = make_app({"REDIS_URL": "redis+cluster://127.0.0.1:1"})
    with pytest.raises(ConfigurationError, match="RQ does not support Redis Cluster"):
        init_rq_dashboard(ext, app)


def test_an_app_without_the_extension_is_refused(make_app, memory_url):
    _, ext = make_app({"REDIS_URL": memory_url})
    with pytest.raises(RuntimeError, match="is not registered on app"):
        init_rq_dashboard(ext, Flask("other"))


def test_a_check_on_the_dashboard_blueprint_still_runs(make_app, memory_url):
    """A user's authentication hook on the dashboard's blueprint, registered
    before the dashboard (as rq-dashboard's own add_basic_auth does), is kept."""
    app, ext = make_app({"REDIS_URL": memory_url})
    refused = []

    def staff_only():
        refused.append(request.path)
        return Response("Staff only", 401)

    app.before_request_funcs.setdefault("rq_dashboard", []).append(staff_only)
    init_rq_dashboard(ext, app)
    assert app.test_client().get("/rq/0/data/queues.json").status_code == 401
    assert refused == ["/rq/0/data/queues.json"]
