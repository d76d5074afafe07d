"""The model cache: content keys, atomic and verified output folders, safe to share between processes.

Every cached output (tiny models, shadows, builds, AWQ, Olive, vision exports) is written through
`cached_dir`; the steps that turn one model into another (builds, AWQ, Olive, vision exports) through
`cached_step`, which adds the key, the log file and an info record:

    step = cache.cached_step("builds", "tiny-int4", (model_dir, options), make,
                             info_file="build_info.json", label="int4 build")
    # a verified, finished folder is reused; else make(tmp, log) fills a temp folder,
    # manifest.json is written last and the folder renamed into place

- **Verified hits.** `manifest.json`, written last, lists every file with its size and SHA-256. A
  hit re-hashes every file up to 16 MB. A bigger one (a Phi-3.5 build's 2.8 GB `model.onnx.data`)
  is checked by its size, a SHA-256 of 64 blocks of 256 KiB spread over the whole file and its
  modification time; when that time differs from the manifest's (the file was written to, or copied
  without keeping times) the whole file is re-hashed. Measured on a 2.95 GB file (2-core course
  machine, 2026-12-01): the sampled check 16 ms (46 ms from a cold page cache), the full hash 3.1 s
  (3.3 s cold), which every write pays once. So a zeroed region, a truncated or half-copied file, or
  any write after the manifest is caught at the cost of milliseconds; what it misses is a change of
  fewer than 1/64 of the bytes, between samples, that also kept the file's time. A hit that does not
  match is rebuilt, with one line saying why.
- **Shared caches.** A lock file per output (`filelock`, which works on Linux, macOS and Windows)
  makes concurrent processes that want the same output wait for the first one and then reuse it:
  each output is built once. On a workshop server the instructor fills one cache beforehand and
  attendees read it as `LABKIT_SHARED_CACHE` (read-only for them): `output_dir` returns its verified
  copy, and anything it lacks (an attendee's own settings) is made in the attendee's own `LABKIT_CACHE`.
- **Never half-moved.** The new folder is filled under a temp name and renamed into place. An
  existing folder is only replaced when it failed verification (or `force`); a reader never sees
  a missing folder for a valid output.
- **Leftovers cleaned.** A step killed half-way (SIGKILL, a closed laptop) leaves its `.tmp-*`
  folder; the next run of the same step removes it, under the same lock.

The logging helper `captured_output` lives here too: every cached step sends its library's noisy
output to a log file beside the cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import CacheError

MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "labkit-manifest-v2"
_OLDER_FORMAT = "labkit-manifest-v1"   # sizes of big files only: trusted when it hashed every file
HASH_LIMIT = 16 << 20   # files up to 16 MB are re-hashed on every hit; bigger ones sampled (see module doc)
_SAMPLES, _SAMPLE_BYTES = 64, 256 << 10
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_LOCK_TIMEOUT_S = 6 * 3600   # a full-size build can take a long time; a dead holder releases its lock at exit


# ------------------------------------------------------------------ keys
def model_fingerprint(model_dir: Path) -> str:
    """Content hash of a checkpoint folder: full hash of small files, size + head/tail of big ones. Lab 01."""
    h = hashlib.sha256()
    # the manifest is the cache's bookkeeping (file times), not the model: a re-made copy keeps its key
    for f in sorted(p for p in Path(model_dir).rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(f.relative_to(model_dir).as_posix().encode())
        size = f.stat().st_size
        h.update(str(size).encode())
        with f.open("rb") as fh:
            if size <= 64 << 20:
                h.update(fh.read())
            else:  # multi-GB weights: hashing every byte would take longer than a cache hit should
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


def cache_key(*parts) -> str:
    """A short key for a cached output: folders count by content (`model_fingerprint`), the rest as JSON. Lab 01.

    Every cached step (builds, AWQ, Olive, vision exports) names its output folder with it, so a
    changed input model or setting never reuses a stale result."""
    resolved = [model_fingerprint(p) if isinstance(p, Path) and p.is_dir() else p for p in parts]
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ------------------------------------------------------------------ manifests
def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MB chunks (manifests, committed checkpoints, inputs of cache keys). All labs."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sampled_sha256(path: Path) -> str:
    """SHA-256 of 64 blocks of 256 KiB spread evenly over a file, first and last byte included. All labs.

    Reads 16 MB of any file: a quick content check for multi-GB weights (a zeroed region of more
    than 1/64 of the file, a truncation, a pre-allocated copy that stopped half-way)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        last = max(size - _SAMPLE_BYTES, 0)
        for i in range(_SAMPLES):
            fh.seek(last * i // (_SAMPLES - 1))
            h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()


def write_manifest(folder: Path) -> Path:
    """List every file of a finished output folder (size, SHA-256; sample and time of big ones). Written last.
    All labs."""
    folder = Path(folder)
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        stat = f.stat()
        entry = {"size": stat.st_size, "sha256": file_sha256(f)}
        if stat.st_size > HASH_LIMIT:
            entry.update(sample=sampled_sha256(f), mtime_ns=stat.st_mtime_ns)
        files[f.relative_to(folder).as_posix()] = entry
    path = folder / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps({"format": _MANIFEST_FORMAT, "files": files}, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def verify(folder: Path) -> str | None:
    """None if `folder` is a finished output whose files match its manifest, else what is wrong. All labs."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MANIFEST} (an unfinished or older output)"
    except (OSError, ValueError):
        return f"unreadable {MANIFEST}"
    files = manifest.get("files", {})
    if manifest.get("format") == _OLDER_FORMAT and any("sha256" not in e for e in files.values()):
        return f"an older {MANIFEST} without a content hash of its large files"
    if manifest.get("format") not in (_MANIFEST_FORMAT, _OLDER_FORMAT):
        return f"{MANIFEST} format {manifest.get('format')!r}, expected {_MANIFEST_FORMAT!r}"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != expected["size"]:
            return f"{name} has {stat.st_size:,} bytes, the manifest says {expected['size']:,} (truncated or replaced)"
        if "sample" in expected and sampled_sha256(path) != expected["sample"]:
            return f"{name} does not match its manifest (sampled blocks differ: damaged or overwritten)"
        if "sample" in expected and stat.st_mtime_ns == expected["mtime_ns"]:
            continue       # big, unchanged since written, and its samples match: skip the full hash
        if file_sha256(path) != expected["sha256"]:
            return f"{name} does not match its SHA-256 (modified after it was written)"
    return None


# ------------------------------------------------------------------ where an output lives
def output_dir(*parts: str, force: bool = False) -> Path:
    """The folder of one cached output, `<cache>/<parts...>`: the shared cache's copy when it verifies, else the
    own cache's (made there when missing). `force` always means the own cache. All labs."""
    from .paths import cache_dir, shared_cache_dir

    shared = shared_cache_dir()
    if shared is not None and not force and verify(shared.joinpath(*parts)) is None:
        return shared.joinpath(*parts)
    return cache_dir().joinpath(*parts)


def relocated(recorded: str | Path) -> Path:
    """A path a cached record holds (Olive's export names its base model and adapter), found again where this
    process sees the cache: a workshop's served copy or a copied cache has other roots than the one that made it.
    All labs."""
    from .paths import cache_dir, shared_cache_dir

    path = Path(recorded)
    if os.access(path, os.R_OK):
        return path
    for root in filter(None, (shared_cache_dir(), cache_dir())):
        for start in range(1, len(path.parts)):      # the longest tail of the recorded path under this root
            candidate = root.joinpath(*path.parts[start:])
            if candidate.exists():
                return candidate
    return path


def _in_shared_cache(folder: Path) -> bool:
    from .paths import shared_cache_dir

    shared = shared_cache_dir()
    return shared is not None and Path(folder).resolve().is_relative_to(shared.resolve())


# ------------------------------------------------------------------ locking and atomic replacement
def lock_for(final: Path):
    """The inter-process lock guarding one output folder (a `.lock` file beside it). All labs."""
    from filelock import FileLock

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # mode 0o666: attendees on one server run as different users and share the lock files.
    return FileLock(final.parent / f".{final.name}.lock", timeout=_LOCK_TIMEOUT_S, mode=0o666)


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temp folder beside `final`; on success write its manifest and move it to `final`. All labs.

    A step killed half-way leaves no folder that looks finished (the temp folder's name starts with
    `.tmp-`) and the previous `final`, if any, untouched. Callers hold `lock_for(final)`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        write_manifest(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if final.exists():   # only a damaged or forced output is replaced; readers of valid ones never see a gap
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            _rename(final, old)
            try:
                _rename(tmp, final)
            except CacheError:
                _rename(old, final)   # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            _rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RENAME_WAITS_S = (0.1, 0.3, 1.0, 3.0)


def _rename(source: Path, target: Path) -> None:
    """Rename a folder, waiting out Windows' brief refusals (a virus scanner reading a new file: PermissionError).

    A folder that stays in use (a model loaded in a kernel) ends in CacheError naming the fix."""
    for wait in (*_RENAME_WAITS_S, None):
        try:
            source.rename(target)
            return
        except PermissionError as err:
            if wait is None:
                raise CacheError(f"Could not move {source.name} to {target} ({err.strerror or err}): a file in it is "
                                 "in use, by a model loaded in a notebook or a virus scanner. Restart the kernels "
                                 "that loaded it (Kernel > Restart) and run the cell again.") from None
            time.sleep(wait)


@contextlib.contextmanager
def cached_dir(final: Path, force: bool = False, label: str | None = None):
    """Yield None when `final` is a verified output; else a temp folder to fill (see module doc). All labs."""
    final = Path(final)
    if _in_shared_cache(final):   # someone else's cache: used as it is, never written
        problem = verify(final)
        if problem is None and not force:
            yield None
            return
        raise CacheError(f"{final} is in the shared cache (LABKIT_SHARED_CACHE), which labkit never writes"
                         f"{f': {problem}' if problem else ''}. Ask whoever fills it to remake it "
                         "(`make course` on the server), or unset LABKIT_SHARED_CACHE to make your own copy.")
    try:
        lock = lock_for(final)
        lock.acquire()
    except OSError as err:
        if err.errno not in _READ_ONLY:
            raise
        # a shared cache this user may only read: a finished output needs no lock (it is never rewritten
        # in place); anything else cannot be made here
        if verify(final) is None and not force:
            yield None
            return
        raise CacheError(f"The model cache {final.parent} is read-only for you ({err.strerror}) and holds no "
                         f"finished {final.name}: point LABKIT_CACHE at a folder you can write, or ask whoever "
                         "runs the shared cache to make it.") from None
    try:
        _remove_leftovers(final)
        problem = verify(final)
        if problem is None and not force:
            yield None
            return
        if final.exists() and problem is not None:
            print(f"{label or final.name}: the cached copy at {final} does not verify ({problem}); rebuilding it.")
        with atomic_dir(final) as tmp:
            yield tmp
    finally:
        lock.release()


def _remove_leftovers(final: Path) -> None:
    """Temp and replaced copies of `final` that a killed step left behind. The caller holds final's lock, so
    no live step is writing them."""
    mine = re.compile(rf"\.tmp-{re.escape(final.name)}-[a-z0-9_]{{8}}|\.old-{re.escape(final.name)}-\d+")
    for leftover in final.parent.iterdir():
        if mine.fullmatch(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


# ------------------------------------------------------------------ one cached step
@dataclass
class Step:
    """A cached step's finished output: its folder, log, recorded info, and whether it was reused. All labs."""

    path: Path
    log: Path
    info: dict
    cached: bool
    seconds: float


def cached_step(kind: str, name: str, key: tuple, make: Callable[[Path, Path], dict], *, info_file: str,
                label: str, force: bool = False) -> Step:
    """Run `make(tmp, log)` once per input and reuse its verified output after that. All labs.

    The output folder is `<cache>/<kind>/<name>-<cache_key(*key)>`, its log `<cache>/<kind>/logs/<folder>.log`.
    `make` fills `tmp` (checks that need no heavy work belong before the call; checks that do, such as
    memory, go first inside `make`, so a cache hit never pays them) and returns what to record: it lands in
    `info_file` with the seconds it took. Builds, AWQ, Olive's fine-tune and export and the vision export
    all run through here.
    """
    final = output_dir(kind, f"{name}-{cache_key(*key)}", force=force)
    log = final.parent / "logs" / f"{final.name}.log"
    started = time.perf_counter()
    with cached_dir(final, force, label) as tmp:
        if tmp is None:
            info = json.loads((final / info_file).read_text(encoding="utf-8"))
            return Step(final, log, info, True, time.perf_counter() - started)
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = dict(make(tmp, log) or {})
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = shutil.disk_usage(final.parent).free
            raise CacheError(f"The disk filled up while making the {label} in {final.parent} ({free / 1e9:.1f} GB "
                             "free now); the unfinished output is removed. Free space there or point LABKIT_CACHE "
                             "at a bigger disk, then run it again.") from err
        info.setdefault("seconds", round(time.perf_counter() - started, 2))
        (tmp / info_file).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return Step(final, log, info, False, info["seconds"])


# ------------------------------------------------------------------ logs
class _LogToFile(io.TextIOBase):
    """A stream that writes a library's output to a file and ticks a progress bar on key lines."""

    STAGES = re.compile(r"Reading (embedding|decoder|final|LM head)|start to quantize|Saving ONNX|Saving GenAI")

    def __init__(self, log_file, bar):
        self.log_file, self.bar = log_file, bar

    def write(self, text: str) -> int:
        self.log_file.write(text)
        for line in text.splitlines():
            match = self.STAGES.search(line)
            if match and self.bar is not None:
                stage = re.sub(r" (in|to) /\S*", "", line.strip())      # no temp folder paths in the bar
                self.bar.set_postfix_str(stage[:60], refresh=False)
                self.bar.update(1)
        return len(text)


@contextlib.contextmanager
def captured_output(log_file, bar=None):
    """Send prints, tqdm bars and logging records of a noisy library call to `log_file`. Lab 01 (and 03)."""
    stream = _LogToFile(log_file, bar)
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers, root.level = [handler], logging.INFO
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        root.handlers, root.level = saved_handlers, saved_level
