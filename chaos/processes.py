"""The application processes of one run: the harness under gunicorn
(several worker processes, threads for Socket.IO's WebSockets), an RQ worker,
and the load driver. Each runs in a folder of its own with an environment
that names only the run's Redis: nothing can fall back to a Redis the run did
not start, nor read a .env of the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import LOOPBACK, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
HARNESS = "chaos.harness:create_app()"
GUNICORN_WORKERS = 3
GUNICORN_THREADS = 32


def environment(settings: dict[str, str]) -> dict[str, str]:
    """The process environment without any Redis setting of the shell, plus
    ``settings``."""
    kept = {name: value for name, value in os.environ.items()
            if "REDIS" not in name.upper() and name != "SECRET_KEY"}
    return {**kept, "PYTHONPATH": str(ROOT), "FLASK_SKIP_DOTENV": "1", **settings}


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, command: list[str], workdir: Path,
                 settings: dict[str, str], stdin: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=workdir, env=environment(settings),
                                        stdin=stdin, stdout=self.log,
                                        stderr=subprocess.STDOUT, text=True)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class AppServer(Process):
    """gunicorn serving the harness."""

    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__("gunicorn", [
            sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
            "--workers", str(GUNICORN_WORKERS), "--threads", str(GUNICORN_THREADS),
            "--bind", f"{LOOPBACK}:{self.port}", "--graceful-timeout", "3",
            "--log-level", "warning", HARNESS], workdir, settings)
        wait_until(self.answers, 60, "gunicorn to serve the harness", interval=0.2)

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def post(self, path: str, body: Any) -> Any:
        """A JSON request to the harness, for reading the stores back."""
        request = urllib.request.Request(f"{self.base}{path}", method="POST",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())


class RqWorker(Process):
    def __init__(self, workdir: Path, settings: dict[str, str], queue: str) -> None:
        super().__init__("rq-worker", [sys.executable, "-m", "flask", "--app", HARNESS,
                                       "redis", "worker", queue], workdir, settings)


class LoadDriver(Process):
    """``python -m chaos.load``; takes commands on its stdin."""

    def __init__(self, workdir: Path, plan: dict[str, Any]) -> None:
        self.output = workdir / "calls.json"
        plan_path = workdir / "plan.json"
        workdir.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(json.dumps({**plan, "output": str(self.output)}))
        super().__init__("load", [sys.executable, "-m", "chaos.load", str(plan_path)],
                         workdir, {}, stdin=subprocess.PIPE)

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Stop the load and read back its records."""
        if self.process.poll() is None:
            self.command("stop")
        self.process.wait(timeout)
        self.log.close()
        return dict(json.loads(self.output.read_text()))
