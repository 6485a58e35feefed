"""The package's imports go one way: no module imports, through any chain, itself."""
import ast
import glob
import os

PACKAGE = os.path.join(os.path.dirname(__file__), os.pardir, "fastlstm")


def module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def imports(path, name):
    """The fastlstm modules path imports at its top level or in functions."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fastlstm"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fastlstm"))
    return out


def test_no_import_circles():
    paths = glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)
    names = {module_name(p): p for p in paths}
    # a package's __init__ gathers its modules: an edge into it is not a circle
    graph = {n: {m for m in imports(p, n) if m in names and m != n
                 and not names[m].endswith("__init__.py")}
             for n, p in names.items() if not p.endswith("__init__.py")}
    state = {}

    def visit(n, path):
        state[n] = "open"
        for m in graph.get(n, ()):
            if state.get(m) == "open":
                raise AssertionError(" -> ".join(path + [n, m]))
            if m not in state:
                visit(m, path + [n])
        state[n] = "done"
    for n in graph:
        if n not in state:
            visit(n, [])
    assert "fastlstm.io" in graph and "fastlstm.text" in graph["fastlstm.cli"]
