"""Sphinx configuration of the flask-core-redis documentation.

Build it with ``bash scripts/docs`` (``sphinx-build -W -n``: every warning,
an unresolved cross-reference included, fails the build). Pages are Markdown
read by MyST; the API reference's docstrings are reST, rendered by autodoc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The checkout's own package (not another installed copy) and the local
# extension in _ext (the ``config-keys`` directive).
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

import flask_core_redis  # noqa: E402

project = "flask-core-redis"
author = "the flask-core-redis authors"
copyright = "the flask-core-redis authors"
release = flask_core_redis.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "pallets_sphinx_themes",
    "config_keys",
    "public_names",
]
exclude_patterns = ["_build"]
root_doc = "index"

# -- MyST -------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# "page.md#section" links reach headings down to ###, e.g. connecting.md#sentinel.
myst_heading_anchors = 3

# -- Theme ------------------------------------------------------------------
# The Pallets theme, as Flask's extension guidelines recommend. It builds
# cleanly under -W -n and fetches nothing at build time (its fonts ship in
# the package). Its version banner asks PyPI about the release from the
# reader's browser; off while the package is not published.
html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_title = f"flask-core-redis {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
# The page contents list an object by its own name (close()), not its path.
toc_object_entries_show_parents = "hide"
version_banner = False

# -- Autodoc ----------------------------------------------------------------
autodoc_member_order = "bysource"
# Docstrings are prose, not :param: fields: the types read best in the signature.
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "both"
# ``Registration`` is the protocol the extension object satisfies: what a
# user passes is the extension.
autodoc_type_aliases = {"Registration": "flask_core_redis.CoreRedis"}

# -- Cross-references -------------------------------------------------------
# Nitpicky mode (-n) makes every reference that resolves to nothing a
# warning, type annotations included. Builtins and ``typing`` names resolve
# on their own. Names from other projects' documentation would resolve
# through intersphinx, which downloads their inventories: CI builds have no
# network but PyPI, so intersphinx is on only when asked for
# (FLASK_CORE_REDIS_DOCS_INTERSPHINX=1, e.g. on a documentation host), and the
# names below are rendered as plain text otherwise. Each entry is a module
# tree whose objects the API's annotations name.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", None),
    "flask": ("https://flask.palletsprojects.com/en/stable/", None),
    "redis": ("https://redis.readthedocs.io/en/stable/", None),
}
if os.environ.get("FLASK_CORE_REDIS_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")

nitpick_ignore_regex = [
    # The standard library: Python's inventory (intersphinx).
    (r"py:.*", r"(collections\.abc|logging|threading|types|datetime|ssl)\..*"),
    # Flask, Werkzeug and Click: Flask's inventory and its neighbours'.
    (r"py:.*", r"(flask|werkzeug|click)\..*"),
    # Quart, the asyncio Flask: an app type in signatures.
    (r"py:.*", r"quart\..*"),
    # redis-py: its inventory (intersphinx).
    (r"py:.*", r"redis\..*"),
    # The libraries the integrations wrap; RQ, python-socketio,
    # Flask-Session and kombu publish inventories too.
    (r"py:.*", r"(rq|socketio|flask_session|kombu)\..*"),
    # Flask-DebugToolbar's panel base class, and the Jinja environment it takes.
    (r"py:.*", r"(flask_debugtoolbar|jinja2)\..*"),
    # The type variable of generic operations.
    (r"py:class", r"T"),
]
