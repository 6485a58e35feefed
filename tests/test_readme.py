"""The README's code runs as written, from an empty folder."""
import importlib.util
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def missing_modules(code):
    """The top-level modules code imports that this Python cannot find."""
    names = re.findall(r"^\s*(?:import|from)\s+(\w+)", code, flags=re.M)
    return sorted({n for n in names if importlib.util.find_spec(n) is None})


def test_the_readme_starts_with_the_two_commands():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == [
        "pip install . && fastlstm train", 'pip install ".[test]" && pytest']


def test_the_readme_has_python_blocks():
    assert len(blocks()) >= 2


@pytest.mark.parametrize("code", blocks(), ids=lambda code: code.split("\n")[0][:40])
def test_every_python_block_runs(python, code):
    missing = missing_modules(code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not installed "
                    "(an optional package)")
    r = python(code)
    assert r.returncode == 0, (code[:200], r.stderr[-2000:])
