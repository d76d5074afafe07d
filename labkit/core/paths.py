"""Where things live: the repo's data, the model cache and run folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .errors import CacheError, InputError, MissingInput

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
NOTEBOOKS = REPO / "notebooks"


def cache_dir() -> Path:
    """Models labkit creates or builds (tiny Phi-3, ONNX builds). `LABKIT_CACHE` overrides. All labs."""
    path = Path(os.environ.get("LABKIT_CACHE", REPO / "models")).expanduser()
    if path.exists() and not path.is_dir():
        raise CacheError(f"LABKIT_CACHE={path} is a file, not a folder: point LABKIT_CACHE at a folder (labkit "
                         "creates it when it is missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(f"Cannot create the model cache {path} ({err.strerror}): point LABKIT_CACHE at a folder "
                         "you can write.") from None
    return path


def shared_cache_dir() -> Path | None:
    """A read-only model cache someone else filled (`LABKIT_SHARED_CACHE`: a workshop server's), or None. All labs.

    Its verified outputs are used in place; whatever it lacks is made in `cache_dir()` (see `cache.output_dir`)."""
    value = os.environ.get("LABKIT_SHARED_CACHE")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise CacheError(f"LABKIT_SHARED_CACHE={path} is not a folder: point it at the workshop's shared model cache "
                         "(the instructor fills it with `make course`), or unset it.")
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
    path, n = root / stamp, 1
    while True:   # two runs in the same second (attendees on one server): mkdir decides atomically
        try:
            path.mkdir()
            break
        except FileExistsError:
            path, n = root / f"{stamp}-{n}", n + 1
    # runs/latest.txt names the newest run on every OS; runs/latest links to it where links are cheap (POSIX:
    # Windows needs Developer Mode for a link, and cannot swap a folder link atomically). latest_run() reads either.
    pointer = root / f".latest-{os.getpid()}.txt"
    pointer.write_text(path.name + "\n", encoding="utf-8")
    pointer.replace(root / "latest.txt")
    if os.name != "nt":
        tmp_link = root / f".latest-{os.getpid()}"
        tmp_link.unlink(missing_ok=True)
        try:
            tmp_link.symlink_to(path.name, target_is_directory=True)
            tmp_link.replace(root / "latest")  # atomic swap of the link
        except OSError:   # a file system without links (a FAT USB stick, some network shares): latest.txt serves
            tmp_link.unlink(missing_ok=True)
    return path


def latest_run() -> Path | None:
    """The newest `make course` run folder (`runs/latest`, else the one `runs/latest.txt` names), or None. All labs."""
    root = runs_root()
    if (root / "latest").is_dir():
        return root / "latest"
    try:
        name = (root / "latest.txt").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return root / name if name and (root / name).is_dir() else None


def shown(path: Path) -> str:
    """A path as the labs print it: relative to the project folder when inside it (`runs/20261205-210638`), so an
    executed notebook reads the same on every machine; absolute elsewhere. All labs."""
    for candidate in (Path(path).absolute(), Path(path).resolve()):    # a venv's python links outside it
        try:
            return candidate.relative_to(REPO).as_posix()
        except ValueError:
            continue
    return str(path)


def venv_python(venv: Path) -> Path:
    """A virtual environment's Python: `bin/python`, on Windows `Scripts\\python.exe`. All labs."""
    return venv_script(venv, "python")


def venv_script(venv: Path, name: str) -> Path:
    """A console script a virtual environment installed (`optimum-cli`), where this OS puts it. All labs."""
    return Path(venv) / ("Scripts" if os.name == "nt" else "bin") / (f"{name}.exe" if os.name == "nt" else name)


def dir_size(path: Path) -> int:
    """Total bytes of the files under `path`. All labs."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def read_json(path: Path, fix: str = "restore it from the original (re-download or rebuild the folder)") -> dict:
    """A JSON config file, or an error naming the file, where it breaks and the fix. All labs.

    A half-copied checkpoint or a hand edit otherwise surfaces as a bare `JSONDecodeError` from
    deep inside transformers or the model builder.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingInput(f"{path} is missing: {fix}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f"line {err.lineno}, column {err.colno}: {err.msg}" if isinstance(err, json.JSONDecodeError) \
            else "not UTF-8 text"
        raise InputError(f"{path} is not valid JSON ({where}). The file is corrupt or half-written: {fix}.") \
            from None


def read_run_or_reference(path: Path, reference: Path | None, fix: str) -> dict | None:
    """A benchmark's result on this machine (`path`); without one, the course's committed `reference` run,
    marked `"reference": True`; else None. Lab 01 (and lab 05): `make bench-scale`, `make bench-peers`."""
    if Path(path).exists():
        return read_json(path, fix)
    if reference is not None and Path(reference).exists():
        return {**read_json(reference, "restore it with `git checkout -- docs/measured`"), "reference": True}
    return None


def write_json_atomic(path: Path, value) -> Path:
    """Write JSON to `path` through a temp file and a rename: readers never see half a file. All labs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path
