"""The package's layers, read from its imports (module level, under
TYPE_CHECKING and inside functions alike): no cycle, the core never imports a
plugin, built-in plugins import only the plugin API, and every arrow points
down the layers."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flask_core_redis"
NAME = "flask_core_redis"

#: Each module's layer, by the longest matching name; a module may import
#: only modules of a lower layer, or of its own layer's package.
LAYERS = {
    f"{NAME}.errors": 0,
    f"{NAME}.values": 0,
    f"{NAME}.key_text": 0,
    f"{NAME}.config": 1,
    f"{NAME}.connection": 2,
    f"{NAME}.telemetry": 3,
    f"{NAME}.plugin_api": 4,
    f"{NAME}.plugins": 5,
    f"{NAME}.state": 5,
    f"{NAME}.integrations": 6,
    f"{NAME}.routes": 7,
    f"{NAME}.cli": 7,
    f"{NAME}.extension": 8,
    NAME: 9,
}
CORE = ("config", "connection", "telemetry", "state", "cli", "routes", "errors", "values",
        "key_text",
        "extension", "integrations", "plugin_api")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


DYNAMIC_IMPORTS = {"__import__", "import_module", "resolve_name"}


def imports_in(source: str, package: str) -> set[str]:
    """Every module name ``source`` imports, from inside ``package``: import
    statements wherever they stand, and calls of __import__, import_module and
    pkgutil.resolve_name with a literal name."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif isinstance(node, ast.Call) and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if called in DYNAMIC_IMPORTS:
                found.add(node.args[0].value.partition(":")[0])
    return found


def imports_of(name: str) -> set[str]:
    """Every module of the package that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return {module for module in imports_in(path.read_text(), package) if module in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int:
    owner = max((prefix for prefix in LAYERS if name == prefix or
                 name.startswith(prefix + ".")), key=len)
    return LAYERS[owner]


def top_package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_graph_sees_imports_of_every_kind():
    assert len(MODULES) > 30
    dynamic = imports_in("import importlib\n"
                         "def load():\n"
                         "    importlib.import_module('flask_core_redis.plugins.otp')\n"
                         "    __import__('flask_core_redis.extension')\n"
                         "    pkgutil.resolve_name('flask_core_redis.cli:redis_group')\n",
                         f"{NAME}.state")
    assert {f"{NAME}.plugins.otp", f"{NAME}.extension", f"{NAME}.cli"} <= dynamic
    # Module level and under TYPE_CHECKING in the package, inside a function here.
    assert f"{NAME}.config.settings" in GRAPH[f"{NAME}.config.urls"]
    assert f"{NAME}.plugin_api.context" in GRAPH[f"{NAME}.plugin_api.hookspecs"]
    assert f"{NAME}.config" in imports_in("def load():\n    from . import config\n", NAME)


def find_cycle(graph):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state:
                cycle = visit(target, [*path, target])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name):
    upward = sorted(target for target in GRAPH[name] if layer(target) > layer(name)
                    or (layer(target) == layer(name)
                        and top_package(target) != top_package(name)))
    assert not upward, f"{name} (layer {layer(name)}) imports {upward}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[1:2] and
                                        n.split(".")[1] in CORE))
def test_the_core_never_imports_a_plugin(name):
    assert not [target for target in GRAPH[name] if target.startswith(f"{NAME}.plugins")]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(f"{NAME}.plugins")))
def test_built_in_plugins_import_only_the_plugin_api(name):
    own = ".".join(name.split(".")[:3])  # its own plugin package
    allowed = {f"{NAME}.plugin_api"}
    outside = sorted(target for target in GRAPH[name]
                     if target not in allowed and not target.startswith(own))
    assert not outside, f"{name} imports {outside}"


def test_importing_the_package_imports_no_ecosystem_extension():
    """The integrations with Flask-Session, Flask-Limiter, rq-dashboard and
    kombu load their library only when their own module is imported."""
    import subprocess
    import sys

    optional = ["flask_session", "flask_limiter", "limits", "rq_dashboard", "kombu", "celery",
                "flask_caching"]
    check = ("import sys, flask_core_redis, flask_core_redis.integrations; "
             f"print(sorted(set({optional!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
