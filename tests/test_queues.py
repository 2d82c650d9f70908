"""RQ job queues: enqueued from a request, run by a real worker process."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from rq.job import Job

from flask_core_redis import ConfigurationError
from flask_core_redis.integrations.queues import queue
from flask_core_redis.integrations.worker import (
    DEFAULT_STOP_TIMEOUT,
    MIN_STOP_TIMEOUT,
    SupervisedWorker,
    WorkerSupervisor,
    worker_class,
)

from . import jobs
from .queue_app import create_app, redis_ext
from .servers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


QUEUE_APP = "tests.queue_app"
#: The same app, in a worker process whose RQ pub/sub thread is stuck.
STUCK_PUBSUB_APP = "tests.stuck_pubsub_app"
#: The shortest --stop-timeout, so that the tests of the bound take the least time.
STOP_TIMEOUT = MIN_STOP_TIMEOUT
#: What a test waits beyond the bound for the process to end and be reaped.
EXIT_SLACK = 3


def start_worker(url: str, folder: Path, *options: str,
                 app: str = QUEUE_APP) -> subprocess.Popen[str]:
    """`flask redis worker math` as a process of its own, run from ``folder``
    (outside the checkout, like every test); its output and errors in one pipe."""
    environment = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", f"{app}:create_app", "redis",
         "worker", "math", *options], env=environment, cwd=folder, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def run_worker(url: str, folder: Path, *, app: str = QUEUE_APP,
               timeout: float = 120) -> tuple[int, str]:
    """A burst worker run to its end: its exit status and output."""
    worker = start_worker(url, folder, "--burst", app=app)
    try:
        output = worker.communicate(timeout=timeout)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
            print(worker.communicate(timeout=30)[0][-4000:])
    return worker.returncode, output


def read_output(worker: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """The lines ``worker`` writes, as it writes them (read by a thread)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout or ()), daemon=True)
    reader.start()
    return lines, reader


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
        connection = queue(redis_ext, "math").connection
        assert Job.fetch(add_id, connection=connection).get_status() == "queued"
    status, output = run_worker(url, tmp_path)
    assert status == 0, output[-2000:]
    with app.app_context():
        assert Job.fetch(add_id, connection=connection).return_value() == 5
        assert Job.fetch(name_id, connection=connection).return_value() == "queue-test-app"
        redis_ext.close()


def test_memory_mode_runs_jobs_as_they_are_enqueued(make_app, memory_url):
    app, ext = make_app({"REDIS_URL": memory_url})
    with app.app_context():
        job = queue(ext).enqueue(jobs.add, 20, 22)
        assert job.get_status() == "finished" and job.return_value() == 42
    result = app.test_cli_runner().invoke(args=["redis", "worker", "--burst"])
    assert result.exit_code == 1 and "nothing for a worker to do" in result.output


def test_cluster_is_refused_with_a_reason(make_app):
    app, ext = make_app({"REDIS_URL": "redis+cluster://127.0.0.1:1"})
    with app.app_context(), pytest.raises(ConfigurationError,
                                          match="RQ does not support Redis Cluster"):
        queue(ext)


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
            connection = queue(redis_ext, "math").connection
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
    assert worker.returncode == 0
    assert "the worker stopped as asked (SIGTERM)" in output


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
    assert "the worker stopped as asked (SIGTERM); it could not sign off" in output, \
        output[-3000:]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_stops_a_worker_that_waits_to_start_again(signal_number, tmp_path):
    """Between RQ's workers (Redis down from the start, say) no RQ handler is
    installed: the first signal must still stop the command, and say so. The
    worker starts again after the retry policy's delays."""
    worker = start_worker(f"redis://127.0.0.1:{free_port()}", tmp_path)
    lines, reader = read_output(worker)
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


def test_a_stop_signal_while_a_failed_worker_lets_go_of_its_subscription_is_a_stop(
        own_redis_server, make_app, monkeypatch):
    """RQ's worker quits on a RedisError (Redis went away during its
    maintenance, say) with its own signal handlers still installed; a
    SIGTERM that comes while it lets go of its subscription, before it is
    started again, stops the supervisor as asked (seen under load: RQ's
    handler raised StopRequested there, and the worker exited 1)."""
    app, _ = make_app({"REDIS_URL": f"redis://{own_redis_server.address}"})

    def work_then_fail(self, burst=False):
        self._install_signal_handlers()  # as RQ's work() does first
        raise redis.ConnectionError("Connection refused.")

    signalled = []
    unsubscribe = SupervisedWorker.unsubscribe

    def unsubscribe_as_the_signal_comes(self):
        if not signalled:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        unsubscribe(self)

    monkeypatch.setattr(worker_class(), "work", work_then_fail)
    monkeypatch.setattr(SupervisedWorker, "unsubscribe", unsubscribe_as_the_signal_comes)
    said: list[str] = []
    before = [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)]
    with app.app_context():
        WorkerSupervisor(redis_ext._state(), ["default"], say=said.append).run()
    assert said == ["the worker stopped as asked (SIGTERM)"]
    assert [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)] == before


def enqueue_endless_job(app, folder: Path) -> tuple[Job, Path]:
    """A job that never ends, and the file its work horse writes its pid to."""
    pid_file = folder / "horse.pid"
    with app.app_context():
        job = queue(redis_ext, "math").enqueue(jobs.wait_forever, str(pid_file))
    return job, pid_file


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_within_the_bound(worker: subprocess.Popen[str], reader: threading.Thread,
                          lines: list[str]) -> str:
    """Send SIGTERM; the worker's output once it has exited, as the README
    promises, within --stop-timeout seconds (and the time to reap it)."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=STOP_TIMEOUT + EXIT_SLACK)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=30)
        reader.join(timeout=30)
        pytest.fail(f"the worker was still running {STOP_TIMEOUT + EXIT_SLACK} s after "
                    f"SIGTERM:\n{''.join(lines)[-4000:]}")
    reader.join(timeout=30)
    output = "".join(lines)
    assert worker.returncode == 0, output[-3000:]
    return output


@pytest.mark.integration
def test_the_first_signal_stops_a_worker_whose_pubsub_thread_is_stuck_within_the_bound(
        own_redis_server, monkeypatch, tmp_path):
    """RQ's pub/sub thread never ends its wait, and the running job never
    ends: the job is stopped as by a second signal (RQ's cold shutdown), the
    worker signs off and exits 0 within --stop-timeout; RQ's abandoned-job
    handling then fails the job."""
    from rq import Worker
    from rq.registry import StartedJobRegistry

    url = f"redis://{own_redis_server.address}"
    monkeypatch.setenv("REDIS_URL", url)
    app = create_app()
    job, pid_file = enqueue_endless_job(app, tmp_path)
    worker = start_worker(url, tmp_path, "--stop-timeout", str(STOP_TIMEOUT),
                          app=STUCK_PUBSUB_APP)
    lines, reader = read_output(worker)
    try:
        horse = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30,
                               "the job to start"))
        output = stop_within_the_bound(worker, reader, lines)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "the worker stopped as asked (SIGTERM)" in output, output[-3000:]
    assert "the pub/sub thread is still reading" in output, output[-3000:]
    assert not is_running(horse)
    with app.app_context():
        connection = queue(redis_ext, "math").connection
        assert Worker.all(connection=connection) == []  # it signed off
        assert job.get_status() == "started"
        StartedJobRegistry("math", connection=connection).cleanup(time.time() + 3600)
        assert job.get_status() == "failed"
        redis_ext.close()


@pytest.mark.integration
def test_the_first_signal_stops_the_worker_within_the_bound_while_redis_hangs(
        own_redis_server, monkeypatch, tmp_path):
    """Redis stops answering while a job runs, and RQ's client has no read
    timeout: nothing the worker sends gets a reply, RQ's pub/sub thread
    waits too. The worker still exits 0 within --stop-timeout, its work
    horse killed, without signing off."""
    url = f"redis://{own_redis_server.address}"
    monkeypatch.setenv("REDIS_URL", url)
    app = create_app()
    _, pid_file = enqueue_endless_job(app, tmp_path)
    worker = start_worker(url, tmp_path, "--stop-timeout", str(STOP_TIMEOUT))
    lines, reader = read_output(worker)
    try:
        horse = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30,
                               "the job to start"))
        own_redis_server.signal(signal.SIGSTOP)
        output = stop_within_the_bound(worker, reader, lines)
    finally:
        own_redis_server.signal(signal.SIGCONT)
        if worker.poll() is None:
            worker.kill()
    assert "the worker stopped as asked (SIGTERM)" in output, output[-3000:]
    assert not is_running(horse)


@pytest.mark.integration
def test_a_burst_worker_whose_pubsub_thread_is_stuck_exits_when_the_queue_is_empty(
        own_redis_server, monkeypatch, tmp_path):
    """It does not wait for RQ's pub/sub thread more than a moment; the
    test allows it the stop bound, far less than that thread's own wait."""
    url = f"redis://{own_redis_server.address}"
    monkeypatch.setenv("REDIS_URL", url)
    app = create_app()
    add_id = app.test_client().post("/jobs/add/2/3").get_json()["id"]
    status, output = run_worker(url, tmp_path, app=STUCK_PUBSUB_APP,
                                timeout=DEFAULT_STOP_TIMEOUT)
    assert status == 0, output[-3000:]
    assert "the pub/sub thread is still reading" in output, output[-3000:]
    with app.app_context():
        connection = queue(redis_ext, "math").connection
        assert Job.fetch(add_id, connection=connection).return_value() == 5
        redis_ext.close()


@pytest.mark.integration
def test_a_stop_signal_that_comes_while_the_worker_signs_off_is_a_stop(
        own_redis_server, make_app, monkeypatch):
    """RQ's handler raises StopRequested when no job runs, even in the middle
    of signing off: the worker stopped as asked, it did not fail."""
    from flask_core_redis.integrations import worker as supervision

    class SignalledWhileSigningOff(supervision.worker_class()):
        def teardown(self):
            self.request_stop(signal.SIGTERM, None)  # as RQ's handler would call it
            super().teardown()

    monkeypatch.setattr(supervision, "worker_class", lambda: SignalledWhileSigningOff)
    app, _ = make_app({"REDIS_URL": f"redis://{own_redis_server.address}"})
    before = [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)]
    result = app.test_cli_runner().invoke(args=["redis", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "the worker stopped as asked (SIGTERM)" in result.output
    assert [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)] == before
