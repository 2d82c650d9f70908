"""The README is the front door: short, with the install line, a first
example that runs as written from a fresh folder and reaches the configured
server, links that lead somewhere, and the two commands a contributor needs
(the test command being the one CI runs)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .examples import blocks_of

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: A Markdown link: [text](target), the target without its #anchor.
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as MyST and GitHub write them."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


def test_the_readme_is_short_and_says_how_to_install_and_run():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert "pip install flask-core-redis" in text
    assert "bash scripts/demo" in text and "bash scripts/test" in text
    assert "exec bash scripts/test" in (ROOT / ".ci" / "run").read_text()  # CI runs it


def test_every_link_of_the_readme_leads_somewhere():
    links = LINK.findall(README.read_text())
    assert len(links) >= 10
    for target, anchor in links:
        if target.startswith(("http://", "https://")):
            continue
        page = ROOT / target
        assert page.exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(page), f"{target} has no heading #{anchor}"


@pytest.mark.parametrize("server", ["memory", pytest.param("real", marks=pytest.mark.integration)])
def test_the_first_example_runs_as_a_script_from_a_fresh_folder(request, server, tmp_path):
    """As a newcomer runs it: a file of its own, REDIS_URL in the environment,
    no .env and nothing else configured; on a real server the counter lands
    there."""
    first = blocks_of(README)[0]
    url = "memory://readme"
    if server == "real":
        server_process = request.getfixturevalue("own_redis_server")
        url = f"redis://{server_process.address}"
    (tmp_path / "app.py").write_text(first.code)
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={"REDIS_URL": url, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "{'visits': 2}"
    if server == "real":
        with server_process.client() as admin:
            assert admin.get("visits") == "2"  # it reached the configured server
