"""The environment and text encoding of the Python processes labkit starts (AWQ, the vision export, Olive, the
peer engines, bench-scale's measured runs).

On Windows a child's pipes and files default to the ANSI code page (cp1252), in which progress bars' block
characters and non-Latin text cannot be written: the child would die on its first such line. Children run in
Python's UTF-8 mode instead, and labkit reads their output as UTF-8.
"""

from __future__ import annotations

import os

# Keyword arguments for subprocess.run / Popen that read a child's output as text.
TEXT = {"encoding": "utf-8", "errors": "replace"}


def python_env(base: dict | None = None, **extra: str) -> dict:
    """`base` (default: this process's environment) with UTF-8 mode and I/O for a Python child, plus `extra`.
    All labs."""
    return {**(os.environ if base is None else base), "PYTHONUTF8": "1", "PYTHONIOENCODING": "utf-8", **extra}
