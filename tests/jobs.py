"""Jobs the queue tests enqueue (importable by a worker process)."""

import time

from flask import current_app


def add(a, b):
    return a + b


def app_name():
    return current_app.name


def slow(seconds):
    time.sleep(seconds)
    return seconds
