"""Repository hygiene: no import circles between modules."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (lazy imports inside functions too)."""
    graph = {}
    for package in ("mosqa", "cli"):
        for path in (root / package).glob("*.py"):
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            graph[module] = found
    return {m: {d for d in found if d in graph and d != m} for m, found in graph.items()}


def mutual_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])


def test_no_two_modules_import_each_other():
    assert mutual_imports(import_graph(ROOT)) == []


def test_the_circle_check_finds_a_circle(tmp_path):
    for package in ("mosqa", "cli"):
        (tmp_path / package).mkdir()
    (tmp_path / "mosqa" / "a.py").write_text("from mosqa import b\n")
    (tmp_path / "mosqa" / "b.py").write_text("def f():\n    from mosqa.a import g\n")
    assert mutual_imports(import_graph(tmp_path)) == [("mosqa.a", "mosqa.b")]

