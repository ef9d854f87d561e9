"""The import rules of the architecture (docs/architecture.md), read from the source with ``ast``.

* the library (``rag``, without ``rag.cli``) imports only itself;
* ``ingest`` builds on ``rag``; ``api`` on ``rag`` and ``ingest``; ``eval`` on ``rag`` and ``ingest``;
  ``api`` and ``eval`` never import each other;
* ``rag.cli`` is the composition root: it may import everything, and nothing imports it;
* no circle of modules, counting imports inside functions too.

Every violation is reported with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("rag", "ingest", "api", "eval")
ALLOWED = {"rag": {"rag"}, "ingest": {"rag", "ingest"}, "api": {"rag", "ingest", "api"},
           "eval": {"rag", "ingest", "eval"}}
CLI = "rag.cli"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))
            if ".venv" not in p.parts}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (the longest existing prefix), or None if outside."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports(root: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import statement anywhere in a module, functions included."""
    edges = []
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                # ``from pkg import sub`` names the submodule when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for resolved in dict.fromkeys(_resolve(t, modules) for t in targets):
                if resolved and resolved != mod:
                    edges.append((mod, resolved, node.lineno))
    return edges


def layer(mod: str) -> str:
    return "cli" if mod == CLI or mod.startswith(CLI + ".") else mod.split(".")[0]


def rule_violations(root: Path) -> list[str]:
    modules = project_modules(root)
    out = []
    for src, dst, line in imports(root, modules):
        where = f"{modules[src].relative_to(root)}:{line}"
        if layer(dst) == "cli" and layer(src) != "cli":
            out.append(f"{where}: {src} imports the CLI ({dst}); the CLI is the composition root nothing imports")
        elif layer(src) != "cli" and layer(dst) not in ALLOWED[layer(src)]:
            out.append(f"{where}: {src} imports {dst} ({layer(src)} may import only "
                       f"{', '.join(sorted(ALLOWED[layer(src)]))})")
    return out


def cycles(root: Path) -> list[str]:
    """Each strongly connected component of the module graph with more than one module, with its edges."""
    modules = project_modules(root)
    edges = imports(root, modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    lines: dict[tuple[str, str], int] = {}
    for src, dst, line in edges:
        graph[src].add(dst)
        lines.setdefault((src, dst), line)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in found:
        inner = [f"{modules[s].relative_to(root)}:{lines[(s, d)]} {s} -> {d}"
                 for s in comp for d in sorted(graph[s]) if d in comp]
        out.append("circle of modules: " + "; ".join(inner))
    return out


def test_imports_flow_one_way():
    assert rule_violations(ROOT) == []


def test_no_circle_of_modules():
    assert cycles(ROOT) == []


def test_the_checks_catch_violations(tmp_path):
    """A tree with a library module importing the API, the API importing eval, and a circle."""
    for pkg in PACKAGES + ("rag/cli",):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "rag" / "core.py").write_text("def f():\n    from api.app import create_app\n")
    (tmp_path / "rag" / "cli" / "main.py").write_text("import api.app\nimport eval.x\n")
    (tmp_path / "api" / "app.py").write_text("from eval import x\nfrom rag.cli import main\ncreate_app = 1\n")
    (tmp_path / "eval" / "x.py").write_text("from rag import core\n")
    (tmp_path / "ingest" / "a.py").write_text("from ingest import b\n")
    (tmp_path / "ingest" / "b.py").write_text("import ingest.a\n")
    found = rule_violations(tmp_path)
    assert any(v.startswith("rag/core.py:2: rag.core imports api.app") for v in found)
    assert any(v.startswith("api/app.py:1: api.app imports eval.x") for v in found)
    assert any(v.startswith("api/app.py:2: api.app imports the CLI") for v in found)
    assert not any("rag/cli/main.py" in v for v in found)  # the composition root may import anything
    circles = cycles(tmp_path)
    assert any("ingest/a.py:1 ingest.a -> ingest.b" in c and "ingest/b.py:1 ingest.b -> ingest.a" in c
               for c in circles)
