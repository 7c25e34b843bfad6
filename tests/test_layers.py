"""The package's layers point one way: every import of a diffrep module goes to a lower layer (or
its own), and the imports form no cycle. Read from the source with ast, imports inside functions
included; importing the library leaves matplotlib's backend as the user had it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import diffrep

ROOT = Path(diffrep.__file__).parent

# Lowest first. A module may import modules of its own layer or of any layer below it.
LAYERS = [
    ["config"],
    ["data", "model", "diffusion"],
    ["percolation", "rundir", "provenance"],
    ["training", "plots"],
    ["evaluation"],
    ["run"],
    ["sweep"],
    ["experiments"],
    ["report"],
    ["cli", "__main__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def layer_of(module: str) -> str:
    return module.split(".")[0]


def imports(path: Path) -> set[str]:
    """The diffrep modules `path` imports (as dotted names below diffrep), anywhere in the file."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                names = [".".join(target + [alias.name]) for alias in node.names] if not node.module else [".".join(target)]
            elif node.module and node.module.split(".")[0] == "diffrep":
                names = [node.module.split(".", 1)[1]] if "." in node.module else [a.name for a in node.names]
            else:
                continue
            found.update(n for n in names if n)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("diffrep."))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(modules)
    edges = {}
    for name, path in modules.items():
        # "from . import probes" names a module; "from .probes import x" names one too: keep the modules
        edges[name] = {t if t in known else t.rsplit(".", 1)[0] for t in imports(path)} - {name}
    return edges


def test_every_module_has_a_layer():
    assert {layer_of(m) for m in graph() if m != "__init__"} <= set(RANK)


def upward_edges(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() if a != "__init__" for b in targets
                  if RANK[layer_of(b)] > RANK[layer_of(a)])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return None


def test_no_import_points_up():
    assert upward_edges(graph()) == []


def test_the_imports_form_no_cycle():
    assert find_cycle(graph()) is None


def test_the_checker_sees_an_upward_edge_and_a_cycle(tmp_path, monkeypatch):
    # The checks above must be able to fail: a fake package with an import inside a function that
    # points up, and a cycle.
    fake = tmp_path / "diffrep"
    (fake / "evaluation").mkdir(parents=True)
    (fake / "config.py").write_text("from .cli import main\n")
    (fake / "cli.py").write_text("from .config import x\n")
    (fake / "evaluation" / "probes.py").write_text("def f():\n    from ..report import page\n")
    (fake / "report.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    edges = graph()
    assert upward_edges(edges) == ["config -> cli", "evaluation.probes -> report"]
    assert find_cycle(edges) == ["cli", "config", "cli"]


def test_importing_the_library_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import diffrep.run, diffrep.report, diffrep.cli, "
            "diffrep.experiments; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"
