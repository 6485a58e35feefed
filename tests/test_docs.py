"""Every reference in the code to docs/DESIGN.md names a section it has."""
import glob
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_every_reference_to_the_design_resolves():
    with open(os.path.join(ROOT, "docs", "DESIGN.md"), encoding="utf-8") as f:
        sections = set(re.findall(r"^## (.+)$", f.read(), flags=re.M))
    files = [p for pattern in ("fastlstm/**/*.py", "src_cy/*.p*", "src_cy/*.h", "tests/*.py",
                               "bench/*.py")
             for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)]
    cited = {}
    for path in files:
        if os.path.basename(path) == "test_docs.py":
            continue
        with open(path, encoding="utf-8") as f:
            # a reference may wrap a line, behind a comment's leader
            text = " ".join(line.strip().lstrip("#*/ ") for line in f)
        if re.search(r"(?<!docs/)DESIGN\.md", text):
            cited.setdefault("DESIGN.md without docs/", []).append(path)
        for name in re.findall(r'docs/DESIGN\.md, "([^"]+)"', text):
            cited.setdefault(name, []).append(path)
    missing = {k: v for k, v in cited.items() if k not in sections}
    assert cited and not missing, missing
