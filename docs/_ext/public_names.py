"""Cross-references from the package's docstrings and annotations to the
names the API reference documents them under.

Autodoc writes a type by the module that defines it
(``flask_core_redis.plugin_api.context.PluginContext``), while the reference
documents it where users import it (``flask_core_redis.PluginContext``); a
docstring written inside a module names its neighbours briefly
(``:class:`RedisUnavailable```). Under nitpicky mode both would be warnings.
On a reference Sphinx could not resolve, this extension:

- resolves a dotted name of the package to the documented name of the very
  same object;
- resolves a short name to the one documented object whose name ends with
  it, when exactly one does;
- renders a type variable (``T``) as plain text: it names no object.

Anything else stays unresolved, and the build says so.

Before autodoc reads the package, the imports each module makes for type
checkers only (``if TYPE_CHECKING:``) are run into the module, so that the
annotations naming them (``app: Flask``) can be evaluated and linked. A
dataclass field whose default comes from a factory shows ``...`` as its
default: ``<factory>``, as Python writes it, breaks the signature's parsing.
A constant documented where it is re-exported (``flask_core_redis.NOW_MS``)
gets the ``#:`` comment of its definition, found by following the imports,
rather than the docstring of its type."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.nodes import make_refnode

PACKAGE = "flask_core_redis"


def _import(name: str) -> Any:
    """The object a dotted name denotes, or None."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return None
        return target
    return None


def _documented(env: BuildEnvironment) -> dict[str, Any]:
    """The Python objects of the build, by full name (not the aliases that
    autodoc adds under the defining module's name)."""
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    return {name: entry for name, entry in objects.items() if not entry.aliased}


def _same_object(env: BuildEnvironment, target: str) -> str | None:
    wanted = _import(target)
    if wanted is None:
        return None
    found = [name for name in _documented(env)
             if name.startswith(PACKAGE) and name.rsplit(".", 1)[-1] == target.rsplit(".", 1)[-1]
             and _import(name) is wanted]
    return found[0] if len(found) == 1 else None


def _by_suffix(env: BuildEnvironment, target: str) -> str | None:
    found = [name for name in _documented(env) if name.endswith(f".{target}")]
    return found[0] if len(found) == 1 else None


def resolve(app: Sphinx, env: BuildEnvironment, node: pending_xref,
            contnode: nodes.TextElement) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if target.startswith(PACKAGE) and isinstance(_import(target), TypeVar):
        return contnode
    name = (_same_object(env, target) if target.startswith(f"{PACKAGE}.")
            else _by_suffix(env, target))
    if name is None:
        return None
    entry = _documented(env)[name]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id,
                        contnode, name)


def _run_type_checking_imports(module: ModuleType) -> None:
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING", "typing.TYPE_CHECKING"):
            body = ast.Module(body=node.body, type_ignores=[])
            exec(compile(body, module.__file__ or module.__name__, "exec"), vars(module))


def import_for_type_checkers(app: Sphinx) -> None:
    package = importlib.import_module(PACKAGE)
    modules = [package.__name__] + [info.name for info in pkgutil.walk_packages(
        package.__path__, prefix=f"{PACKAGE}.")]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an integration whose library is not installed
            continue
        _run_type_checking_imports(module)


def factory_defaults(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                     signature: str | None, return_annotation: str | None
                     ) -> tuple[str | None, str | None] | None:
    if signature is None or "<factory>" not in signature:
        return None
    return re.sub(r"\s*=\s*<factory>", " = ...", signature), return_annotation


def _doc_comment(modname: str, attribute: str, hops: int = 5) -> list[str] | None:
    """The ``#:`` comment of ``attribute`` in ``modname``, or in the module it
    is imported from (under another name, too), following up to ``hops``
    imports."""
    try:
        analyzer = ModuleAnalyzer.for_module(modname)
        analyzer.analyze()
    except Exception:  # no source: nothing to read
        return None
    comment = analyzer.attr_docs.get(("", attribute))
    if comment:
        return list(comment)
    if hops == 0:
        return None
    module = importlib.import_module(modname)
    package = modname if hasattr(module, "__path__") else modname.rpartition(".")[0]
    for node in ast.parse(analyzer.code).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) == attribute:
                source = importlib.util.resolve_name(
                    "." * node.level + (node.module or ""), package)
                return _doc_comment(source, alias.name, hops - 1)
    return None


def reexported_constants(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                         lines: list[str]) -> None:
    if what != "data" or not name.startswith(PACKAGE):
        return
    modname, _, attribute = name.rpartition(".")
    comment = _doc_comment(modname, attribute)
    if comment is not None:
        lines[:] = comment


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", reexported_constants)
    app.connect("autodoc-process-signature", factory_defaults)
    app.connect("builder-inited", import_for_type_checkers)
    app.connect("missing-reference", resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
