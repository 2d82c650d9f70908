"""The index of redis-py workarounds (flask_core_redis.connection.redis_py):
every entry points at code that exists, says which redis-py releases it
targets, and every workaround the module holds is listed."""

import importlib
import inspect
import re

import pytest

from flask_core_redis.connection import redis_py
from flask_core_redis.connection.redis_py import WORKAROUNDS

#: ``all``, or a range of redis-py releases such as ``6.4-7.3``.
VERSIONS = re.compile(r"all|\d+\.\d+-\d+\.\d+")


def resolve(location):
    module_name, _, qualified_name = location.partition(":")
    if module_name.startswith("."):
        module_name = f"flask_core_redis.connection{module_name}"
    found = importlib.import_module(module_name)
    for name in qualified_name.split("."):
        found = vars(found)[name] if inspect.isclass(found) else getattr(found, name)
    return found


@pytest.mark.parametrize("workaround", WORKAROUNDS, ids=lambda entry: entry.location)
def test_each_listed_workaround_is_where_the_index_says(workaround):
    """Found as a name of its module or an attribute its class defines
    itself (not one it inherits from redis-py)."""
    assert resolve(workaround.location) is not None
    assert VERSIONS.fullmatch(workaround.versions), workaround.versions
    assert workaround.fixes and workaround.remove_when


def test_the_index_lists_each_workaround_once():
    locations = [entry.location for entry in WORKAROUNDS]
    assert len(locations) == len(set(locations))


def test_every_workaround_class_of_the_module_is_listed():
    listed = {entry.location for entry in WORKAROUNDS}
    classes = {f".redis_py:{name}" for name, value in vars(redis_py).items()
               if inspect.isclass(value) and value.__module__ == redis_py.__name__
               and name == value.__name__ and value is not redis_py.Workaround}
    assert classes and classes <= listed
