"""labkit's modules form layers: no module imports one that (directly or not) imports it back."""

import ast
import subprocess
import sys

from labkit import paths

PACKAGE = paths.REPO / "labkit"


def import_graph() -> dict[str, set[str]]:
    """labkit module -> labkit modules it imports (at top level or inside functions)."""
    graph = {}
    for source in PACKAGE.glob("*.py"):
        name, edges = source.stem, set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    edges.add(node.module.split(".")[0])
                else:
                    edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labkit."):
                edges.add(node.module.split(".")[1])
        graph[name] = edges - {name}
    return graph


def find_cycle(graph):
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail + [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_labkit_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"generate", "bench", "vision", "cache"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_runtime_layer_imports_nothing_above_it():
    assert import_graph()["generate"] <= {"paths", "cache"}, "generate is the runtime layer"


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "labkit", "tests", "tools"],
                         cwd=paths.REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
