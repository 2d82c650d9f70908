"""The published distribution's metadata, as the installed package sees it."""

import importlib.metadata

import flask_core_redis


def test_version_is_the_distributions():
    assert flask_core_redis.__version__ == importlib.metadata.version("flask-core-redis")


def test_only_user_facing_extras_are_published():
    # The test, bench, chaos, demo and dev tools are dependency groups, which
    # are never published: an extra named after one would install them for users.
    metadata = importlib.metadata.metadata("flask-core-redis")
    assert set(metadata.get_all("Provides-Extra") or []) == {
        "async", "ecosystem", "memory", "orjson", "otel", "rq", "socketio"}
