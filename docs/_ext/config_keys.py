"""The ``config-keys`` directive: a configuration key table rendered from the
code's own :class:`~flask_core_redis.Key` declarations at build time, so a
key's name, default and description live in one place.

In a MyST page::

    ```{config-keys} core
    ```

The argument is ``core`` (the connection's keys), ``plugins`` (the keys of
every built-in plugin, plugin by plugin in name order) or one built-in
plugin's name (``presence``, ``otp``, ``cache``). Each key becomes a
``confval`` target, so any page can link it with ``{confval}`REDIS_URL```;
``:no-index:`` renders a table without targets, for a second table of the
same keys. ``:prefix:`` changes the prefix shown (``REDIS`` by default)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, cast

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.domains.std import StandardDomain
from sphinx.util.docutils import SphinxDirective

import flask_core_redis.plugins
from flask_core_redis.config import KEYS, Key, key_table


def builtin_plugins() -> dict[str, tuple[Key, ...]]:
    """Each built-in plugin's keys (its module's ``CONFIG_KEYS``), by name."""
    found = {}
    for module in sorted(pkgutil.iter_modules(flask_core_redis.plugins.__path__),
                         key=lambda module: module.name):
        plugin = importlib.import_module(f"flask_core_redis.plugins.{module.name}")
        found[module.name] = tuple(getattr(plugin, "CONFIG_KEYS", ()))
    return found


def keys_of(selection: str) -> tuple[Key, ...]:
    plugins = builtin_plugins()
    if selection == "core":
        return KEYS
    if selection == "plugins":
        return tuple(key for keys in plugins.values() for key in keys)
    if selection in plugins:
        return plugins[selection]
    names = ", ".join(["core", "plugins", *plugins])
    raise ValueError(f"config-keys: unknown selection {selection!r}; expected one of {names}")


class ConfigKeys(SphinxDirective):
    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"no-index": directives.flag,
                                             "prefix": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        try:
            keys = keys_of(self.arguments[0])
        except ValueError as error:
            raise self.error(str(error)) from None
        prefix = self.options.get("prefix", "REDIS")
        # The table as key_table writes it (the README's form), parsed by the
        # page's own parser: the descriptions are Markdown.
        container = nodes.container()
        self.state.nested_parse(StringList(key_table(keys, prefix).splitlines(),
                                           source=self.get_source_info()[0]),
                                self.content_offset, container)
        tables = list(container.findall(nodes.table))
        if len(tables) != 1:
            raise self.error("config-keys: the key table did not parse as one table")
        table = tables[0]
        table["classes"].append("config-keys")
        if "no-index" not in self.options:
            self._add_targets(table, [f"{prefix}_{key.suffix}" for key in keys])
        return [table]

    def _add_targets(self, table: nodes.table, names: list[str]) -> None:
        """Make the first cell of each row the ``confval`` target of its key."""
        rows = list(table.findall(nodes.row))[1:]  # the first is the header
        std = cast(StandardDomain, self.env.get_domain("std"))
        for row, name in zip(rows, names, strict=True):
            cell = row[0]
            node_id = f"confval-{nodes.make_id(name)}"
            cell["ids"].append(node_id)
            std.note_object("confval", name, node_id, location=cell)
            self.state.document.note_explicit_target(cell)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-keys", ConfigKeys)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
