"""The package's module-level import graph has no cycle, and no module imports another's private names
(the pieces two input formats share live in ksmtrace.ingest.base / fields / source)."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "pipeline" / "ksmtrace"
#: the input-format modules of ksmtrace.ingest
FORMATS = {"ftrace", "funcgraph", "perf_script", "tracecmd", "binary"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = ("ksmtrace",) + p.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str, path: Path, known: set[str]):
    """(target module, imported name or None) of the imports run when ``mod`` is imported: the module
    body's, not those inside functions, nor under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            body += node.body + node.orelse
        elif isinstance(node, ast.Try):
            body += node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ksmtrace"):
                    yield a.name, None
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, is_pkg, node)
            if not target.startswith("ksmtrace"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                yield (sub, None) if sub in known else (target, a.name)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    g = {m: set() for m in mods}
    for m, p in mods.items():
        for target, _ in _imports(m, p, set(mods)):
            if target in mods and target != m:
                g[m].add(target)
    return g


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_graph_is_read():
    g = _graph()
    assert "ksmtrace.report.model" in g and "ksmtrace.report.stats" in g["ksmtrace.report.model"]
    assert "ksmtrace.ingest.base" in g["ksmtrace.ingest.ftrace"]


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cyc = _cycle(_graph())
    assert cyc is None, "import cycle: " + " -> ".join(cyc)


def test_no_module_imports_another_modules_privates():
    """Shared helpers have public names in a shared module; ``_name`` stays inside its module."""
    mods = _modules()
    bad = []
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):  # also the imports inside functions
            if isinstance(node, ast.ImportFrom):
                target = _resolve(m, p.name == "__init__.py", node)
                if target.startswith("ksmtrace") and target != m:
                    bad += [f"{m} imports {target}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "; ".join(bad)


def test_no_format_imports_another_formats_privates():
    mods = _modules()
    bad = []
    for m, p in mods.items():
        if not m.startswith("ksmtrace.ingest."):
            continue
        # every import, also inside functions
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(m, p.name == "__init__.py", node)
                if target.rsplit(".", 1)[-1] in FORMATS and target != m:
                    bad += [f"{m} imports {target}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, "; ".join(bad)


def test_no_module_imports_a_dependencys_private_module():
    """Dependencies through their public API only (``typer._click`` is typer's vendored copy of click, subject to
    change without notice): no imported module path with a ``_private`` part outside ksmtrace."""
    bad = []
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad += [f"{m} imports {n}" for n in names if not n.startswith("ksmtrace")
                    and any(part.startswith("_") and not part.startswith("__") for part in n.split("."))]
    assert not bad, "; ".join(bad)
