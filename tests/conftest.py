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


@pytest.fixture(autouse=True)
def team_as_asked(monkeypatch):
    """Kernel calls in the tests take the team they ask for. A small call that finds
    the team's threads asleep runs on one thread otherwise (fastlstm._threads._Wake),
    and the tests of the split across threads would test one thread. tests/
    test_threads.py tests the wake on its own and in fresh processes."""
    from fastlstm import _threads
    monkeypatch.setattr(_threads._wake, "enabled", False)
