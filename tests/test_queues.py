"""RQ job queues: enqueued from a request, run by a real worker process."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq.job import Job

from flask_core_redis import ConfigurationError

from .queue_app import create_app, redis_ext
from .servers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def start_worker(url: str, folder: Path, *options: str) -> subprocess.Popen[str]:
    """`flask redis worker math` as a process of its own, run from ``folder``
    (outside the checkout, like every test); its output and errors in one pipe."""
    environment = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.queue_app:create_app", "redis",
         "worker", "math", *options], env=environment, cwd=folder, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def run_worker(url: str, folder: Path) -> tuple[int, str]:
    """A burst worker run to its end: its exit status and output."""
    worker = start_worker(url, folder, "--burst")
    output = worker.communicate(timeout=120)[0]
    return worker.returncode, output


def server_url(request, mode):
    if mode == "standalone":
        return f"redis://{request.getfixturevalue('own_redis_server').address}"
    return request.getfixturevalue("own_sentinel").url


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["standalone", "sentinel"])
def test_job_enqueued_by_a_request_runs_in_a_worker_process(request, mode, monkeypatch,
                                                             tmp_path):
    url = server_url(request, mode)
    monkeypatch.setenv("REDIS_URL", url)
    app = create_app()
    web = app.test_client()
    add_id = web.post("/jobs/add/2/3").get_json()["id"]
    name_id = web.post("/jobs/app-name").get_json()["id"]
    with app.app_context():
        connection = redis_ext.queue("math").connection
        assert Job.fetch(add_id, connection=connection).get_status() == "queued"
    status, output = run_worker(url, tmp_path)
    assert status == 0, output[-2000:]
    with app.app_context():
        assert Job.fetch(add_id, connection=connection).return_value() == 5
        assert Job.fetch(name_id, connection=connection).return_value() == "queue-test-app"
        redis_ext.close()


def test_memory_mode_runs_jobs_as_they_are_enqueued(make_app, memory_url):
    from . import jobs

    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        job = ext.queue().enqueue(jobs.add, 20, 22)
        assert job.get_status() == "finished" and job.return_value() == 42
    result = app.test_cli_runner().invoke(args=["redis", "worker", "--burst"])
    assert result.exit_code == 1 and "nothing for a worker to do" in result.output


def test_cluster_is_refused_with_a_reason(make_app):
    app, ext = make_app({"REDIS_URL": "redis+cluster://127.0.0.1:1"})
    with app.app_context(), pytest.raises(ConfigurationError,
                                          match="RQ does not support Redis Cluster"):
        ext.queue()


@pytest.mark.integration
def test_the_worker_outlives_an_outage_that_hits_a_running_job(own_redis_server, monkeypatch,
                                                               tmp_path):
    """RQ's worker quits when Redis fails it while a job runs (it cannot
    read the job's status back); `flask redis worker` starts it again."""
    url = f"redis://{own_redis_server.address}"
    monkeypatch.setenv("REDIS_URL", url)
    app = create_app()
    web = app.test_client()
    worker = start_worker(url, tmp_path)
    try:
        slow_id = web.post("/jobs/slow").get_json()["id"]
        with app.app_context():
            connection = redis_ext.queue("math").connection
            wait_until(lambda: Job.fetch(slow_id, connection=connection).get_status()
                       == "started", 30, "the slow job to start")
            redis_ext.close()
        own_redis_server.stop()  # the job ends, and the worker fails, meanwhile
        time.sleep(3)
        own_redis_server.start()
        add_id = web.post("/jobs/add/2/3").get_json()["id"]
        with app.app_context():
            wait_until(lambda: Job.fetch(add_id, connection=connection).return_value() == 5,
                       30, "a job enqueued after the outage to run")
        assert worker.poll() is None
    finally:
        worker.terminate()
        try:
            output = worker.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            worker.kill()
            output = worker.communicate(timeout=30)[0]
            print(output[-6000:])
            raise
        print(output[-4000:])  # shown when the test fails
    assert "starting again in" in output, output[-3000:]


@pytest.mark.integration
def test_the_worker_stops_at_the_first_sigterm_while_redis_is_down(own_redis_server, tmp_path):
    """With Redis gone, RQ's worker fails to sign off on SIGTERM (it writes
    its death to Redis); that is a stop, not an error to start again on."""
    url = f"redis://{own_redis_server.address}"
    worker = start_worker(url, tmp_path)
    try:
        client = own_redis_server.client()
        wait_until(lambda: client.keys("rq:worker:*"), 30, "the worker to register")
        client.close()
        own_redis_server.stop()
        time.sleep(1)  # the worker is now retrying its dequeue
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
            print(worker.communicate(timeout=30)[0][-4000:])
    assert worker.returncode == 0, output[-3000:]
    assert "starting again" not in output, output[-3000:]
    assert "the worker stopped as asked; it could not sign off" in output, output[-3000:]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_stops_a_worker_that_waits_to_start_again(signal_number, tmp_path):
    """Between RQ's workers (Redis down from the start, say) no RQ handler is
    installed: the first signal must still stop the command, and say so. The
    worker starts again after the retry policy's delays."""
    worker = start_worker(f"redis://127.0.0.1:{free_port()}", tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout or ()), daemon=True)
    reader.start()
    try:
        def restarts():
            return [line.rsplit("; ", 1)[-1].strip() for line in lines
                    if "starting again in" in line]

        wait_until(lambda: len(restarts()) >= 2, 60, "the worker to fail twice")
        assert restarts()[:2] == ["starting again in 50 ms", "starting again in 100 ms"]
        worker.send_signal(signal_number)
        worker.wait(timeout=30)
        reader.join(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    output = "".join(lines)
    assert worker.returncode == 0, output[-3000:]
    assert f"the worker stopped as asked ({signal_number.name})" in output, output[-3000:]


@pytest.mark.integration
def test_a_worker_run_in_process_leaves_the_signal_handlers_as_it_found_them(
        own_redis_server, make_app):
    app, _ = make_app({"REDIS_URL": f"redis://{own_redis_server.address}"})
    before = [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)]
    result = app.test_cli_runner().invoke(args=["redis", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)] == before
