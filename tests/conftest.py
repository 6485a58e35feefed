import os
import subprocess
import sys
import textwrap

import pytest

# tests/cells.py is imported by name from every test module.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def python(tmp_path):
    """Run a script in a fresh interpreter, from an empty folder: `python -c` puts its
    working folder first on sys.path, and from the checkout's root it would import the
    source tree, which has no compiled extensions after a plain `pip install .`.
    Returns the CompletedProcess; extra keywords become environment variables."""
    def run(script, **env):
        return subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                              capture_output=True, text=True, cwd=tmp_path,
                              env=dict(os.environ, **env), timeout=600)
    return run
