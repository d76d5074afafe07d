"""Where things live: the repo's data, the model cache, run folders, and atomic output folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
NOTEBOOKS = REPO / "notebooks"


def cache_dir() -> Path:
    """Models labkit creates or builds (tiny Phi-3, ONNX builds). `LABKIT_CACHE` overrides. All labs."""
    path = Path(os.environ.get("LABKIT_CACHE", REPO / "models")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_root() -> Path:
    """Where run folders go: `runs/` or `$LABKIT_RUNS`. All labs."""
    return Path(os.environ.get("LABKIT_RUNS", REPO / "runs")).expanduser()


def run_dir() -> Path:
    """The current run's folder: executed notebooks, artifacts and results.json. All labs.

    `make course` sets `LABKIT_RUN_DIR` to `runs/<timestamp>/`; a notebook opened by hand in
    JupyterLab writes to `runs/interactive/`.
    """
    path = Path(os.environ.get("LABKIT_RUN_DIR", runs_root() / "interactive")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir() -> Path:
    """Create `runs/<timestamp>/` and point `runs/latest` at it. All labs."""
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / stamp
    n = 1
    while path.exists():  # two runs in the same second
        path = root / f"{stamp}-{n}"
        n += 1
    path.mkdir()
    latest = root / "latest"
    tmp_link = root / f".latest-{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(path.name)
    tmp_link.replace(latest)  # atomic swap of the link
    return path


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temp folder beside `final`; move it to `final` only if the block succeeds. All labs.

    A build killed half-way leaves the previous good `final` intact and no folder that
    looks finished: the temp folder's name starts with `.tmp-`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def dir_size(path: Path) -> int:
    """Total bytes of the files under `path`. All labs."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
