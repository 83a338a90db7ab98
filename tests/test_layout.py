"""The engine's shape: stages in one direction, no import cycles, small modules, no private names
borrowed across modules, gradio only in the UI. Read from the source (deferred imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parent.parent / "studio"
# A module may import its own stage and the stages before it, never one after it.
ORDER = ["config", "layout", "ingest", "audio", "model", "evaluation", "training", "service", "ui", "__main__"]
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in STUDIO.rglob("*.py"):
        rel = path.relative_to(STUDIO.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import of a studio module, wherever it is in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("studio"):
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            if subs:
                found += [(s, [], node.lineno) for s in subs]
            else:
                found.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("studio")]
    return found


def test_stages_depend_one_way():
    wrong = []
    for mod, path in MODULES.items():
        own = _stage(mod)
        if own not in ORDER:
            continue
        for target, _, line in _imports(path):
            other = _stage(target)
            if other in ORDER and ORDER.index(other) > ORDER.index(own):
                wrong.append(f"{mod}:{line} imports {target} ({own} -> {other})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_deferred_imports_included():
    graph = {m: {t for t, _, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # packages' __init__ files hold docstrings only; edges into them are not cycles of code
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_is_small(mod):
    n = len(MODULES[mod].read_text().splitlines())
    assert n <= MAX_LINES, f"{mod}: {n} lines (split it by responsibility)"


def test_no_private_name_is_used_from_another_module():
    borrowed = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for target, names, line in _imports(path):
            borrowed += [f"{mod}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("studio"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                borrowed.append(f"{mod}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not borrowed, "\n".join(borrowed)


def test_gradio_is_imported_only_by_the_ui():
    outside = [m for m, p in MODULES.items() if _stage(m) != "ui" and "gradio" in {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [n])}]
    assert not outside, outside


def test_the_checker_sees_a_planted_cycle_and_a_wrong_way_import(tmp_path, monkeypatch):
    """The checks above can fail: a module that imports upwards is caught."""
    fake = tmp_path / "studio" / "ingest"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from studio.service.jobs import start\n")
    monkeypatch.setitem(MODULES, "studio.ingest.bad", fake / "bad.py")
    with pytest.raises(AssertionError, match="ingest -> service"):
        test_stages_depend_one_way()
