"""Jobs the queue tests enqueue (importable by a worker process)."""

import os
import threading
import time
from pathlib import Path

from flask import current_app


def add(a, b):
    return a + b


def app_name():
    return current_app.name


def slow(seconds):
    time.sleep(seconds)
    return seconds


def wait_forever(pid_file):
    """Writes its process id (the work horse's) to ``pid_file``; never ends."""
    Path(pid_file).write_text(str(os.getpid()))
    threading.Event().wait()
