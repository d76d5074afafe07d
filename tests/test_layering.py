"""labkit's layers (labkit/__init__.py, ARCHITECTURE.md): a module imports only its own layer and the layers below."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import labkit
from labkit import paths

PACKAGE = paths.REPO / "labkit"
ORDER = list(labkit.LAYERS)          # lowest first: core, runtime, making, measuring, training, workshop


def module_imports(source: Path, package: Path) -> set[str]:
    """Dotted labkit modules `source` imports, at top level or inside functions, absolute or relative."""
    parent = source.relative_to(package.parent).with_suffix("").parts[:-1]   # e.g. ("labkit", "making")
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(parent[:len(parent) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if target[:1] != ["labkit"]:
                continue
            found |= {".".join(target + [alias.name]) for alias in node.names} | {".".join(target)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("labkit.")}
    return found


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in labkit.LAYERS else None


def violations(package: Path = PACKAGE) -> list[str]:
    """'module (layer) imports target (higher layer)' for every upward import in every module of every layer."""
    found = []
    for layer in ORDER:
        for source in sorted((package / layer).rglob("*.py")):
            for target in sorted(module_imports(source, package)):
                other = layer_of(target)
                if other is not None and ORDER.index(other) > ORDER.index(layer):
                    found.append(f"{source.relative_to(package)} ({layer}) imports {target} ({other})")
    return found


def test_every_module_sits_in_a_layer():
    on_disk = {p.stem for layer in ORDER for p in (PACKAGE / layer).glob("*.py") if p.stem != "__init__"}
    assert on_disk == {m for modules in labkit.LAYERS.values() for m in modules}
    assert not [p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")], \
        "labkit's top level holds only the package's entry points; modules live in a layer"
    assert len(ORDER) >= 4


def test_no_layer_imports_a_layer_above_it():
    assert violations() == []


def test_an_upward_import_is_caught(tmp_path):
    """Plant `core -> training` (and one deep inside a function, relative) in a copy: both are reported."""
    copy = tmp_path / "labkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    results = copy / "core" / "results.py"
    results.write_text(results.read_text() + "\n\ndef _planted():\n    from ..training import olive\n")
    data = copy / "core" / "data.py"
    data.write_text("from labkit.workshop.course import notebooks\n" + data.read_text())
    assert violations(copy) == ["core/data.py (core) imports labkit.workshop.course (workshop)",
                                "core/data.py (core) imports labkit.workshop.course.notebooks (workshop)",
                                "core/results.py (core) imports labkit.training (training)",
                                "core/results.py (core) imports labkit.training.olive (training)"]


def test_the_og_token_loop_is_written_once():
    calls = {str(source.relative_to(PACKAGE)): source.read_text().count(".generate_next_token()")
             for source in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in calls.items() if n} == {"runtime/loop.py": 1}


def test_no_module_is_over_450_lines():
    """A module a newcomer can read in one sitting: one job each (ARCHITECTURE.md)."""
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 450} == {}


def test_short_names_resolve_to_the_module_in_its_layer():
    from labkit import build, generate
    assert build.__name__ == "labkit.making.build" and generate.__name__ == "labkit.runtime.generate"
    assert labkit.start_lab.__module__ == "labkit.workshop.course"


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "labkit", "tests", "tools", "app.py"],
                         cwd=paths.REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
