"""The run's `results.json`: every lab appends what it measured under its own key.

Taught in lab 01 (the first lab that measures something).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import paths


def results_path() -> Path:
    """The current run's results.json. All labs."""
    return paths.run_dir() / "results.json"


def load(path: Path | None = None) -> dict:
    """The results recorded so far (empty when none). All labs."""
    path = Path(path) if path else results_path()
    return json.loads(path.read_text()) if path.exists() else {}


def record(lab: str, values: dict, path: Path | None = None) -> Path:
    """Merge `values` into `results.json` under `lab` (written atomically) and return the file. All labs."""
    path = Path(path) if path else results_path()
    data = load(path)
    data.setdefault(lab, {}).update(values)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return path


def find(lab: str, key: str):
    """What `lab` recorded under `key` in this run's results.json, else in `runs/latest`'s (or None). All labs."""
    for path in (results_path(), paths.runs_root() / "latest" / "results.json"):
        value = load(path).get(lab, {}).get(key) if path.exists() else None
        if value is not None:
            return value
    return None
