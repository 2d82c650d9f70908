"""The venv Quart-Redis runs in: ``.venv-bench-quart-redis`` at the top of
the checkout, made on first use. Quart-Redis 3.0.0 needs redis-py < 6, so it
cannot share the project's venv; everything else the served app touches
(Quart, Flask, Werkzeug, uvicorn, h11) is pinned to the versions of the venv
running the benchmark, so the two apps differ by their Redis layer only. In
it, a folder holds Quart-Redis alone, without its dependencies, to run it on
the benchmark's own venv too."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from .async_http import REPO

VENV = REPO / ".venv-bench-quart-redis"
QUART_REDIS = "quart-redis==3.0.0"
#: Installed at the versions this venv has.
SHARED = ("quart", "flask", "werkzeug", "uvicorn", "h11")


def requirements() -> list[str]:
    return [QUART_REDIS, *(f"{name}=={version(name)}" for name in SHARED)]


def quart_redis_python() -> Path:
    """The venv's Python, the venv made or brought up to date first."""
    python = VENV / "bin" / "python"
    wanted = "\n".join(requirements()) + "\n"
    record = VENV / "bench-requirements.txt"
    if python.exists() and record.exists() and record.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    (VENV / ".gitignore").write_text("*\n")  # the venv keeps itself out of git
    _pip(python, *requirements())
    record.write_text(wanted)
    return python


def quart_redis_alone() -> Path:
    """A folder holding Quart-Redis alone (installed without its
    dependencies), to import it beside this extension on this venv's
    redis-py, outside the range Quart-Redis declares."""
    folder = VENV / "quart-redis-alone"
    record = folder / "bench-requirements.txt"
    if record.exists() and record.read_text() == QUART_REDIS + "\n":
        return folder
    _pip(sys.executable, "--no-deps", "--upgrade", "--target", str(folder), QUART_REDIS)
    record.write_text(QUART_REDIS + "\n")
    return folder


def _pip(python: str | Path, *arguments: str) -> None:
    """``pip install`` with ``python``; its output shown only if it fails."""
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *arguments],
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(arguments)} failed: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")


def redis_py_version(python: str | Path) -> str:
    """The redis-py version ``python`` imports."""
    return subprocess.run([str(python), "-c", "import redis; print(redis.__version__)"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
