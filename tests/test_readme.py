"""The README's code runs as written, from an empty folder."""
import os
import re

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_starts_with_the_two_commands():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == [
        "pip install . && fastlstm train", 'pip install ".[test]" && pytest']


def test_every_python_block_runs(python):
    for code in blocks():
        r = python(code)
        assert r.returncode == 0, (code[:200], r.stderr[-2000:])
