"""The README's promises that are code: its first example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


@pytest.mark.parametrize("server", ["memory", pytest.param("real", marks=pytest.mark.integration)])
def test_the_first_usage_example_runs_as_written(request, server, tmp_path, key):
    url = "memory://readme"
    if server == "real":
        url = f"redis://{request.getfixturevalue('redis_server').address}"
    check = (f"\nwith app.app_context():\n    assert redis_ext.client.get('greeting') == 'hello'"
             f"\n    redis_ext.client.rename('greeting', {key!r})\n")
    environment = {"REDIS_URL": url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", first_python_block() + check], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    if server == "real":
        with request.getfixturevalue("redis_server").client() as admin:
            assert admin.get(key) == "hello"  # it reached the configured server
