"""The package tree is the pipeline: no import circle, and no stage imports a later one (read from the source)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "studylib"

# The stages in pipeline order, listed once. A module may import its own stage and earlier ones. ``synthetic``
# comes after ``evaluation``: it writes a cohort with the ingest stage's writers and its reader sweep scores
# with the evaluation metrics. ``cli`` stands for the modules at the top (cli.py, __main__.py, __init__.py).
STAGES = ("ingest", "preprocessing", "training", "plans", "inference", "evaluation", "synthetic", "reporting",
          "pipeline", "cli")

Graph = Mapping[str, set[str]]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """Dotted name of a source file under ``root`` (``studylib.ingest.cohort``; a package is its ``__init__``)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """The package's own modules that ``path`` imports, at the top or inside a function (lazy imports count)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            # `from . import aggregate` imports a module; `from .cohort import load_cohort` a name of one
            found |= {f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}", root)}
            found.add(target)
    return {m for m in found if m == root.name or m.startswith(root.name + ".")}


def _is_module(dotted: str, root: Path) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (root / relative).with_suffix(".py").exists() or (root / relative / "__init__.py").exists()


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package's ``__init__`` standing for the package)."""
    return {module_name(p, root): imported_modules(p, root) - {module_name(p, root)} for p in sorted(root.rglob("*.py"))}


def stage_of(module: str) -> str:
    """The stage a module belongs to: its first sub-package, ``cli`` for the modules at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else "cli"


def circles(graph: Graph) -> list[list[str]]:
    """Every import circle of ``graph`` (strongly connected components with more than one module, or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: Graph, stages: tuple[str, ...] = STAGES) -> list[str]:
    """Imports from a stage into a later one (``a -> b`` where b's stage comes after a's), and unknown stages."""
    rank = {stage: i for i, stage in enumerate(stages)}
    wrong = [f"{m} is in no stage of {stages}" for m in graph if stage_of(m) not in rank]
    wrong += [f"{m} ({stage_of(m)}) imports {t} ({stage_of(t)})" for m, targets in sorted(graph.items())
              for t in sorted(targets) if rank.get(stage_of(t), -1) > rank.get(stage_of(m), len(stages))]
    return wrong


def test_studylib_has_no_import_circle():
    assert circles(import_graph()) == []


def test_no_stage_imports_a_later_stage():
    assert upward_imports(import_graph()) == []


def test_every_stage_is_a_package_with_a_purpose():
    for stage in STAGES[:-1]:
        init = PACKAGE / stage / "__init__.py"
        assert init.exists(), f"studylib/{stage}/ is not a package"
        assert ast.get_docstring(ast.parse(init.read_text())), f"studylib/{stage}/__init__.py says nothing"
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(STAGES[:-1]), "a package that is no stage, or a stage that is no package"


def test_the_graph_reads_relative_lazy_and_package_imports(tmp_path):
    root = tmp_path / "studylib"
    (root / "ingest").mkdir(parents=True)
    (root / "reporting").mkdir()
    for init in (root / "__init__.py", root / "ingest" / "__init__.py", root / "reporting" / "__init__.py"):
        init.write_text('"""x"""\n')
    (root / "ingest" / "cohort.py").write_text("def f():\n    from ..reporting import figures\n")
    (root / "reporting" / "figures.py").write_text("from ..ingest.cohort import f\nimport numpy\n")
    (root / "cli.py").write_text("from .reporting.figures import x\nfrom . import ingest\n")
    graph = import_graph(root)
    assert graph["studylib.ingest.cohort"] == {"studylib.reporting", "studylib.reporting.figures"}
    assert graph["studylib.reporting.figures"] == {"studylib.ingest.cohort"}
    assert graph["studylib.cli"] == {"studylib", "studylib.ingest", "studylib.reporting.figures"}
    assert circles(graph) == [["studylib.ingest.cohort", "studylib.reporting.figures"]]
    assert upward_imports(graph) == ["studylib.ingest.cohort (ingest) imports studylib.reporting (reporting)",
                                     "studylib.ingest.cohort (ingest) imports studylib.reporting.figures (reporting)"]


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"a"}}, [["a"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_circles_finds_every_circle_and_nothing_else(graph, expected):
    assert circles(graph) == expected
