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
    linux_only = {"memory_limit.py"}   # cgroups: the 16 GB proof on Linux servers, never on an attendee's laptop
    found = []
    sources = [*(paths.REPO / "labkit").rglob("*.py"), paths.REPO / "app.py",
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
