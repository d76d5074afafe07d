"""Before the suite starts: is there disk for what it writes? A full disk otherwise fails tests 15 minutes in,
with errors from wherever the last write happened (an ONNX export, a notebook's shell command)."""

import shutil
import tempfile
from pathlib import Path

from labkit import paths

# Measured on a fresh clone (`.ci/run`): the run writes 4.9 GB of models into an empty cache and leaves 1.4 GB
# in pytest's temp folders. A warm cache is reused, so the cache's need shrinks by what it already holds.
CACHE_GB, TMP_GB, MIN_GB = 5.0, 1.5, 0.5


def disk_shortfall(cache: Path | None = None, tmp: Path | None = None, disk_usage=shutil.disk_usage) -> str | None:
    """None when the disks hold enough, else one message naming the folders, the numbers and the fix."""
    cache = Path(cache or paths.cache_dir())
    tmp = Path(tmp or tempfile.gettempdir())
    cache.mkdir(parents=True, exist_ok=True)
    cached = paths.dir_size(cache) / 1e9
    needs = {cache: max(CACHE_GB - cached, MIN_GB), tmp: TMP_GB}
    by_disk: dict[int, list[Path]] = {}
    for folder in needs:
        by_disk.setdefault(folder.stat().st_dev, []).append(folder)
    for folders in by_disk.values():
        need = sum(needs[f] for f in folders)
        free = disk_usage(folders[0]).free / 1e9
        if free < need:
            where = " and ".join(str(f) for f in folders)
            return (f"the tests need {need:.1f} GB free at {where} and there is {free:.1f} GB. Free space (old "
                    f"builds in {cache} are safe to delete), or point LABKIT_CACHE / TMPDIR at a bigger disk.")
    return None
