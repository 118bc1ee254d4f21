"""Repository hygiene: no import circles between modules, no profiler output in the tree."""

import ast
import subprocess
from pathlib import Path

import pytest

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


def test_no_profiler_output_is_tracked():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert [f for f in tracked.stdout.splitlines() if "onnxruntime_profile" in f] == []


def test_onnxruntime_profiles_go_to_the_named_folder_not_the_working_directory(tmp_path, monkeypatch):
    import gc

    import numpy as np

    from mosqa import dnsmos_spec
    from mosqa.onnx_sessions import PROFILE_ENV, onnx_session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "bench" / "profile"))
    session = onnx_session(dnsmos_spec.model_path(dnsmos_spec.P808_MODEL), threads=1)
    session.run(None, {"input_1": np.zeros((1, 900, 120), np.float32)})
    del session
    gc.collect()
    assert [p.name for p in tmp_path.glob("*.json")] == []
    assert len(list((tmp_path / "bench" / "profile").glob("onnxruntime_profile_model_v8_*.json"))) == 1
