"""The public API documents itself and keeps one shape.

Every name the public modules list in ``__all__``, and every public method,
property and field of the public classes, has documentation of its own: a
docstring, or for a value or a field the ``#:`` comment Sphinx reads (an
inherited docstring does not count). Integrations are functions that take
the extension first, and say what to install when their library is missing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import types
from functools import cache
from pathlib import Path

import pytest

import flask_core_redis
import flask_core_redis.integrations
from flask_core_redis import ConfigurationError, CoreRedis
from flask_core_redis.config import KEYS

PACKAGE = Path(flask_core_redis.__file__).parent

INTEGRATIONS = sorted(
    f"flask_core_redis.integrations.{info.name}"
    for info in pkgutil.iter_modules(flask_core_redis.integrations.__path__)
    if not info.name.startswith("_"))

#: Integrations that import their library as they are imported: their tests
#: run only where the ecosystem extra is installed.
NEEDS_ECOSYSTEM = {"flask_core_redis.integrations.sessions",
                   "flask_core_redis.integrations.debug_toolbar"}


def importable(names):
    """``names`` as parameters, those of NEEDS_ECOSYSTEM marked ``ecosystem``."""
    return [pytest.param(name, marks=pytest.mark.ecosystem) if name in NEEDS_ECOSYSTEM
            else name for name in names]


PUBLIC_MODULES = [
    "flask_core_redis",
    "flask_core_redis.plugin_api",
    "flask_core_redis.connection.pubsub",
    "flask_core_redis.plugins.cache",
    "flask_core_redis.plugins.otp",
    "flask_core_redis.plugins.presence",
    *INTEGRATIONS,
]

#: Settings fields that hold a configuration key are documented by the key table.
KEY_FIELDS = {key.field for key in KEYS if key.field}


@cache
def tree_of(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text(), path)


@cache
def lines_of(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def documented_assignments(path: str, body: list[ast.stmt]) -> dict[str, bool]:
    """Each name assigned in ``body``: whether a ``#:`` comment stands on the
    line before it, or a string right after it."""
    lines = lines_of(path)
    found: dict[str, bool] = {}
    for index, node in enumerate(body):
        if isinstance(node, ast.Assign):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        after = body[index + 1] if index + 1 < len(body) else None
        documented = (lines[node.lineno - 2].lstrip().startswith("#:") or (
            isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)))
        for name in names:
            found[name] = found.get(name, False) or documented
    return found


def module_path(name: str) -> str:
    module = importlib.import_module(name)
    return str(module.__file__)


def value_is_documented(module_name: str, name: str) -> bool:
    """Whether ``name``, as ``module_name`` has it, is documented where it
    is assigned: in that module, or in the one it is imported from."""
    path = module_path(module_name)
    tree = tree_of(path)
    if name in documented_assignments(path, tree.body):
        return documented_assignments(path, tree.body)[name]
    package = module_name if path.endswith("__init__.py") else module_name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name(
                        "." * node.level + (node.module or ""), package) if node.level \
                        else node.module
                    return value_is_documented(source, alias.name)
    return False


def class_node(cls: type) -> tuple[str, ast.ClassDef]:
    path = inspect.getsourcefile(cls)
    assert path is not None
    for node in ast.walk(tree_of(path)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return path, node
    raise AssertionError(f"no source for {cls!r}")


def undocumented_in_class(qualname: str, cls: type) -> list[str]:
    missing = [] if cls.__dict__.get("__doc__") else [qualname]
    path, node = class_node(cls)
    fields = documented_assignments(path, node.body)
    for name, member in vars(cls).items():
        if name.startswith("_") or isinstance(member, type):
            continue
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if isinstance(member, property) or inspect.isfunction(member):
            if not member.__doc__:
                missing.append(f"{qualname}.{name}")
        elif not fields.get(name):
            missing.append(f"{qualname}.{name}")
    for name in inspect.get_annotations(cls):
        if name.startswith("_") or name in vars(cls) or fields.get(name):
            continue
        if not (cls is flask_core_redis.Settings and name in KEY_FIELDS):
            missing.append(f"{qualname}.{name}")
    return missing


def undocumented_in(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = [] if module.__doc__ else [f"{module_name} (module)"]
    for name in module.__all__:
        value = getattr(module, name)
        qualname = f"{module_name}.{name}"
        if isinstance(value, types.ModuleType | types.FunctionType):
            documented = bool(value.__doc__)
        elif isinstance(value, type):
            missing += undocumented_in_class(qualname, value)
            continue
        else:
            documented = value_is_documented(module_name, name)
        if not documented:
            missing.append(qualname)
    return missing


@pytest.mark.parametrize("module_name", importable(PUBLIC_MODULES))
def test_every_public_name_has_documentation_of_its_own(module_name):
    assert undocumented_in(module_name) == []


def test_the_check_sees_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "half_documented.py").write_text(
        '"""A module."""\n__all__ = ["Thing", "LIMIT", "WITHOUT", "run"]\n\n'
        "#: Documented.\nLIMIT = 1\nWITHOUT = 2\n\n\ndef run():\n    pass\n\n\n"
        'class Thing:\n    """A thing."""\n\n    #: Documented.\n    size: int\n'
        '    colour: str\n\n    def paint(self):\n        pass\n\n'
        '    @property\n    def shade(self):\n        """Documented."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert undocumented_in("half_documented") == [
        "half_documented.Thing.paint", "half_documented.Thing.colour",
        "half_documented.WITHOUT", "half_documented.run"]


@pytest.mark.parametrize("module_name", importable(INTEGRATIONS))
def test_every_integration_module_lists_its_public_names(module_name):
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), list)


def test_plugin_helpers_come_from_the_plugin_api():
    from flask_core_redis import plugin_api

    helpers = {"hookimpl", "hookspec", "PluginContext", "Key", "parsers", "LuaScript", "NOW_MS",
               "once_prelude", "once_call", "replay_window_ms", "run_scripts", "ttl_ms",
               "as_text", "MAX_TTL_SECONDS", "OUTAGE_ERRORS", "describe_error",
               "RedisUnavailable", "ConfigurationError"}
    assert helpers <= set(plugin_api.__all__)


@pytest.mark.parametrize(("function", "takes"), [
    ("queues.queue", ["ext", "name", "options"]),
    ("socketio_manager.socketio_manager", ["ext", "channel", "write_only"]),
    pytest.param("sessions.session_interface", ["ext", "app"], marks=pytest.mark.ecosystem),
    ("limiter.limiter_storage", ["ext"]),
    ("kombu_broker.kombu_broker", ["ext"]),
    ("rq_dashboard.init_rq_dashboard", ["ext", "app", "url_prefix"]),
])
def test_every_integration_is_a_function_that_takes_the_extension_first(function, takes):
    module_name, _, name = function.rpartition(".")
    integration = getattr(importlib.import_module(f"flask_core_redis.integrations.{module_name}"),
                          name)
    assert list(inspect.signature(integration).parameters) == takes
    assert not hasattr(CoreRedis, "queue") and not hasattr(CoreRedis, "socketio_manager")


def missing(monkeypatch, *modules):
    """Make importing each of ``modules`` fail, as when it is not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(("module_name", "library", "install"), [
    ("socketio_manager", "socketio", "pip install 'flask-core-redis[socketio]'"),
    ("sessions", "flask_session", "pip install Flask-Session"),
])
def test_a_module_whose_library_is_missing_says_what_to_install(monkeypatch, module_name,
                                                                 library, install):
    name = f"flask_core_redis.integrations.{module_name}"
    monkeypatch.delitem(sys.modules, name, raising=False)  # put back after the test
    missing(monkeypatch, library, *(m for m in list(sys.modules) if m.startswith(library + ".")))
    with pytest.raises(ConfigurationError, match=re.escape(f"{name} needs it: {install}")):
        importlib.import_module(name)


def test_queues_without_rq_say_what_to_install(monkeypatch, make_app, memory_url):
    from flask_core_redis.integrations.queues import queue

    app, ext = make_app({"REDIS_URL": memory_url})
    missing(monkeypatch, "rq")
    with app.app_context(), pytest.raises(
            ConfigurationError, match=r"RQ is not installed, .* pip install "
                                      r"'flask-core-redis\[rq\]'"):
        queue(ext)


def test_the_dashboard_without_rq_dashboard_says_what_to_install(monkeypatch, make_app,
                                                                 memory_url):
    from flask_core_redis.integrations.rq_dashboard import init_rq_dashboard

    app, ext = make_app({"REDIS_URL": memory_url})
    missing(monkeypatch, "rq_dashboard")
    with pytest.raises(ConfigurationError, match="pip install rq-dashboard"):
        init_rq_dashboard(ext, app)

