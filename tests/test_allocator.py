"""glibc keeps freed memory where the models are small, and up to 1 GiB in a real-size fine-tune (labkit.allocator):
set where it should be, and it works."""

import os
import platform
import subprocess
import sys

import pytest

from labkit import allocator, olive

GLIBC = platform.libc_ver()[0] == "glibc"


def test_a_value_already_set_wins():
    env = allocator.keep_freed_memory({"MALLOC_TRIM_THRESHOLD_": "0", "PATH": "/bin"})
    assert env == {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": "0", "PATH": "/bin"}


def test_small_checkpoints_get_it_and_real_size_fine_tunes_a_bounded_one(tiny_dir, tmp_path, monkeypatch):
    big = tmp_path / "big"
    big.mkdir()
    with (big / "model-00001-of-00002.safetensors").open("wb") as f:   # sparse: 3 GiB on paper, nothing on disk
        f.truncate(3 << 30)
    assert allocator.is_small_checkpoint(tiny_dir) and not allocator.is_small_checkpoint(big)
    for name in allocator.KEEP_FREED:            # tests/conftest.py sets them for the whole suite
        monkeypatch.delenv(name, raising=False)
    assert olive._olive_env(["finetune", "-m", str(tiny_dir)])["MALLOC_MMAP_THRESHOLD_"] == str(4 << 30)
    assert olive._olive_env(["finetune", "-m", str(big)])["MALLOC_TRIM_THRESHOLD_"] == str(1 << 30)   # bounded
    assert "MALLOC_MMAP_THRESHOLD_" not in olive._olive_env(["auto-opt", "-m", str(big)])   # the export: 14 GB of 16


@pytest.mark.skipif(not GLIBC, reason="only glibc reads MALLOC_MMAP_THRESHOLD_ (macOS and Windows ignore it)")
def test_glibc_keeps_freed_memory_for_the_next_allocation():
    """An 80 MB array made and freed: by default glibc unmaps it at once (the next one is faulted in again page by
    page); with the setting the process keeps it for reuse."""
    script = ("import numpy as np\n"
              "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
              "before = rss(); a = np.ones(10_000_000); del a\n"
              "print(rss() - before)")
    clean = {k: v for k, v in os.environ.items() if k not in allocator.KEEP_FREED}

    def kept(env):
        return int(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                  check=True).stdout) / 2**20
    assert kept(clean) < 10 and kept(allocator.keep_freed_memory(clean)) > 70
