"""Attendees' own machines: what differs on macOS and Windows, checked here where it can be (issue #31)."""

import ast
import os
import subprocess
import sys

from labkit import paths
from labkit.measuring import memwatch

PROBE = ("import multiprocessing, os\n"
         "print(multiprocessing.get_start_method(), os.environ.get('LABKIT_SPAWN_ONLY'))\n"
         "try:\n    os.fork()\nexcept RuntimeError as e:\n    print('no fork:', e)\n")


def test_every_child_of_the_suite_runs_as_on_macos_and_windows():
    """tests/spawn/sitecustomize.py: spawn, and os.fork raises, in every process the suite starts."""
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("spawn 1\nno fork: os.fork() was called")
    measured = memwatch.run([sys.executable, "-c", PROBE])   # bench-scale's and the course sheet's path
    assert measured.returncode == 0 and measured.output.startswith("spawn 1\nno fork:")


def test_labkit_starts_children_only_as_fresh_interpreters():
    """No fork, no multiprocessing, no POSIX-only hooks: every child is `subprocess` of a fresh interpreter,
    which is what macOS and Windows do anyway."""
    forbidden = {"fork", "forkpty", "setsid", "killpg", "preexec_fn", "start_new_session", "wait3"}
    # Linux servers as root, never an attendee's laptop: cgroups (the 16 GB proof, the workshop server's limits) and
    # the workshop server's Unix users.
    linux_only = {"memory_limit.py", "attendees.py", "server.py"}
    found = []
    sources = [*(p for p in (paths.REPO / "labkit").rglob("*.py") if p.name not in linux_only), paths.REPO / "app.py",
               *(p for p in (paths.REPO / "tools").glob("*.py") if p.name not in linux_only)]
    for source in sources:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            name = (node.attr if isinstance(node, ast.Attribute) else node.arg if isinstance(node, ast.keyword)
                    else None)
            if name in forbidden:
                found.append(f"{source.relative_to(paths.REPO)}:{node.lineno} {name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{source.relative_to(paths.REPO)}:{node.lineno} import {m}" for m in modules
                          if m.split(".")[0] in ("multiprocessing", "fcntl", "resource", "pty", "pwd", "grp")]
    assert not found, "POSIX-only process handling (guard it or use subprocess): " + ", ".join(found)


def test_memwatch_without_wait4_as_on_windows(monkeypatch):
    """Windows has no os.wait4: the tree's peak comes from psutil's samples alone."""
    monkeypatch.delattr(os, "wait4", raising=False)
    hold = "import numpy, time; a = numpy.ones(200 * 2**20, dtype=numpy.uint8); time.sleep(1.0); print('held')"
    run = memwatch.run([sys.executable, "-c", hold], interval=0.1)
    assert run.returncode == 0 and "held" in run.output and run.peak_rss_bytes > 200 * 2**20


def _text_io_without_encoding(source: str) -> list[tuple[int, str]]:
    """Calls that read or write text in the platform's default encoding (cp1252 on Windows, not UTF-8)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or any(k.arg in ("encoding", None) for k in node.keywords):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("read_text", "write_text"):
            found.append((node.lineno, name))
        elif name == "open" and not (isinstance(func, ast.Attribute) and getattr(func.value, "attr", getattr(
                func.value, "id", "")) in ("Images", "Image", "tarfile", "zipfile", "gzip", "os")):
            args = node.args[1:] if isinstance(func, ast.Name) else node.args
            mode = args[0].value if args and isinstance(args[0], ast.Constant) else next(
                (k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)), "r")
            if "b" not in mode:
                found.append((node.lineno, name))
    return found


def test_text_files_are_read_and_written_as_utf8():
    """Windows' default text encoding is cp1252: the course's tokenizer.json files do not even decode in it."""
    sources = [*(paths.REPO / "labkit").rglob("*.py"), paths.REPO / "app.py", *(paths.REPO / "tools").glob("*.py")]
    found = [f"{s.relative_to(paths.REPO)}:{line} {name}" for s in sources
             for line, name in _text_io_without_encoding(s.read_text(encoding="utf-8"))]
    # The labs: files that receive library output (logs: progress bars draw with block characters).
    import nbformat
    for notebook in sorted((paths.REPO / "notebooks").glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
            if cell.cell_type == "code":
                code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                 for line in cell.source.splitlines())
                found += [f"{notebook.name} cell {index}:{line} open" for line, name in
                          _text_io_without_encoding(code) if name == "open"]
    assert not found, "pass encoding=\"utf-8\": " + ", ".join(found)
    assert _text_io_without_encoding("Path('a').read_text()\nopen(p, 'w')\nopen(p, 'rb')\nog.Images.open(p)") == [
        (1, "read_text"), (2, "open")]


def test_python_children_write_utf8_whatever_the_code_page():
    """A child whose stdout would be cp1252 (a Windows pipe) still prints progress blocks and non-Latin text."""
    text = "█ Zürich 東京"
    run = memwatch.run([sys.executable, "-c", f"print({text!r})"], env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert run.returncode == 0 and text in run.output
    plain = subprocess.run([sys.executable, "-c", f"print({text!r})"], capture_output=True,
                           env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert plain.returncode != 0 and b"UnicodeEncodeError" in plain.stderr, "the case the helper exists for"


def test_windows_checkouts_keep_the_course_data_byte_for_byte():
    """.gitattributes: no CRLF conversion, so the data hashed into the models' cache keys is the same everywhere."""
    import shutil

    import pytest
    if not shutil.which("git") or not (paths.REPO / ".git").exists():
        pytest.skip("not a git checkout")
    run = subprocess.run(["git", "ls-files", "--eol", "data", "labkit"], cwd=paths.REPO, capture_output=True,
                         text=True, check=True)
    rows = [line.split("\t")[0].split(None, 2) for line in run.stdout.splitlines()]   # index, worktree, attributes
    text = [attributes.strip() for index, _, attributes in rows if index == "i/lf"]
    assert len(text) > 20 and set(text) == {"attr/text=auto eol=lf"}, "every text file checks out with LF"
    assert {attributes.strip() for index, _, attributes in rows if index == "i/-text"} == {"attr/-text"}, \
        "binary files are marked binary"


def _flaky_rename(monkeypatch, failures: int):
    """Path.rename refuses `failures` times with PermissionError, as Windows does while a scanner reads a file."""
    from pathlib import Path

    from labkit.core import cache
    real, calls = Path.rename, []

    def rename(self, target):
        calls.append(self.name)
        if len(calls) <= failures:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        return real(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(cache, "_RENAME_WAITS_S", (0, 0, 0, 0))
    return calls


def test_an_output_folder_is_moved_into_place_despite_brief_refusals(tmp_path, monkeypatch):
    from labkit.core import cache
    _flaky_rename(monkeypatch, failures=2)
    with cache.atomic_dir(tmp_path / "build") as tmp:
        (tmp / "model.onnx").write_bytes(b"new")
    assert (tmp_path / "build" / "model.onnx").read_bytes() == b"new"


def test_a_folder_in_use_keeps_the_old_output_and_names_the_fix(tmp_path, monkeypatch):
    import pytest

    from labkit.core import cache
    from labkit.core.errors import CacheError
    final = tmp_path / "build"
    with cache.atomic_dir(final) as tmp:
        (tmp / "model.onnx").write_bytes(b"old")
    calls = _flaky_rename(monkeypatch, failures=100)
    with pytest.raises(CacheError, match=r"in use.*Restart the kernels"):
        with cache.atomic_dir(final) as tmp:
            (tmp / "model.onnx").write_bytes(b"new")
    assert len(calls) == 5, "four waits, then the error"
    assert (final / "model.onnx").read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["build"]


def test_venv_paths_follow_the_os():
    from pathlib import Path

    from labkit.core import paths as core_paths
    expected = Path("v") / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    assert core_paths.venv_python(Path("v")) == expected
    assert core_paths.venv_python(Path(sys.prefix)).samefile(sys.executable)


def test_a_model_under_a_path_with_spaces_and_accents(tiny_builds, tmp_path, monkeypatch):
    """C:\\Users\\José Núñez\\…: labkit and app.py load and answer there (Linux, macOS); on Windows, where
    onnxruntime-genai cannot open such a path (its issue 1262), both refuse before loading, naming the fix."""
    import shutil

    import pytest

    from labkit.runtime import generate, inputs
    folder = tmp_path / "José Núñez" / "course models" / "tiny int4"
    shutil.copytree(tiny_builds["int4"].path, folder)
    answer = generate.generate(folder, "Where is Rome?", max_new_tokens=4)
    assert answer.new_tokens == 4
    run = subprocess.run([sys.executable, str(paths.REPO / "app.py"), "-m", str(folder), "--max-new-tokens", "4",
                          "--prompt", "Where is Rome?"], capture_output=True, encoding="utf-8")
    assert run.returncode == 0 and run.stdout.strip(), run.stderr
    monkeypatch.setattr(inputs, "PATHS_MUST_BE_ASCII", True)
    with pytest.raises(inputs.GenerationError, match=r"\(éúñ: its issue 1262\).*LABKIT_CACHE="):
        generate.open_model(folder)


def test_copied_commands_say_how_to_run_them_on_windows():
    """A `\\` line continuation is bash: every markdown cell that shows one says what PowerShell needs instead."""
    import re

    import nbformat
    texts = {f"{nb.name} cell {i}": cell.source for nb in sorted((paths.REPO / "notebooks").glob("*.ipynb"))
             for i, cell in enumerate(nbformat.read(nb, as_version=4).cells) if cell.cell_type == "markdown"}
    texts["README.md"] = (paths.REPO / "README.md").read_text(encoding="utf-8")
    continued = [where for where, text in texts.items()
                 if any(re.search(r"\\\n", code) for code in re.findall(r"```\w*\n(.*?)```", text, re.S))]
    assert continued, "the labs show multi-line commands (lab 02's builder, lab 03's Olive commands)"
    missing = [where for where in continued if "PowerShell" not in texts[where]]
    assert not missing, f"bash continuations with no word for Windows: {missing}"
    readme = texts["README.md"]
    assert "```powershell" in readme and r".venv\Scripts\python -m labkit course --profile laptop" in readme


def test_lab00_warns_windows_attendees_of_cache_paths_that_will_break(monkeypatch):
    from pathlib import Path

    from labkit.workshop import env
    accented, deep = Path("/home/José Núñez/phi-lab/models"), Path("/srv/" + "x" * 120)
    assert env.cache_path_problem(accented) is None and env.cache_path_problem(deep) is None   # not Windows
    monkeypatch.setattr(env, "WINDOWS", True)
    assert "issue 1262" in env.cache_path_problem(accented) and "LABKIT_CACHE=" in env.cache_path_problem(accented)
    assert "260-character" in env.cache_path_problem(deep)
    assert env.cache_path_problem(Path("/phi-lab/models")) is None


def test_the_course_runners_kernels_run_spawn_only(tmp_path):
    """The kernel papermill starts for each lab is a child too: it runs as on macOS and Windows."""
    import json

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from labkit.workshop import course
    nb = new_notebook(cells=[new_code_cell('profile = "cpu"\nrun_dir = ""'), new_code_cell(
        "import json, multiprocessing, os\n"
        "try:\n    os.fork()\n    forked = True\nexcept RuntimeError:\n    forked = False\n"
        "print(json.dumps({'start_method': multiprocessing.get_start_method(), 'forked': forked}))")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    executed = nbformat.read(course.run_notebook(tmp_path / "probe.ipynb", tmp_path / "run"), as_version=4)
    recorded = json.loads(executed.cells[-1].outputs[0]["text"])
    assert recorded["start_method"] == "spawn" and recorded["forked"] is False
