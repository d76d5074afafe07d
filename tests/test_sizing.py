"""Measured requirements and the refusals that name them (labkit.sizing)."""

import json
import subprocess
import sys

import pytest
from conftest import CGROUPS_WRITABLE

from labkit import paths, shadow, sizing

REPO = paths.REPO

GB = 1e9


# ------------------------------------------------------------------ requirements and refusals
def test_requirement_scales_with_parameters():
    full = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini"))
    assert full["basis"] == "measured on the full-size Phi-3.5-mini shadow"
    assert full["peak_rss_bytes"] == sizing.MEASURED_PHI35_MINI["int4"]["peak_rss_bytes"]
    half = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini", 16))
    assert sizing.PROCESS_OVERHEAD_BYTES < half["peak_rss_bytes"] < full["peak_rss_bytes"]
    assert "scaled to" in half["basis"]
    assert sizing.build_requirement("fp32", shadow.shadow_config("phi-3.5-mini"))["size_bytes"] > 15 * GB


def test_a_measured_peak_counts_anonymous_memory_where_the_run_recorded_it():
    """The resident set of a build also holds the memory-mapped checkpoint's cached pages, which the kernel drops
    under pressure: a reference run that recorded anonymous memory sizes by it; an older one by the resident set."""
    row = {"peak_rss_bytes": int(15.9 * GB), "size_bytes": 10, "build_seconds": 60.0}
    assert sizing._measured(row)["peak_rss_bytes"] == int(15.9 * GB)
    assert sizing._measured({**row, "peak_anon_bytes": int(9.1 * GB)})["peak_rss_bytes"] == int(9.1 * GB)


def test_refusal_names_requirement_available_and_total():
    with pytest.raises(sizing.DoesNotFit, match=r"about 7\.5 GB.*4\.0 GB available of 16\.0 GB"):
        sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(4 * GB),
                          total_bytes=int(16 * GB))
    sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(12 * GB),
                      total_bytes=int(16 * GB))


# ------------------------------------------------------------------ a hard memory limit (tools/memory_limit.py)
needs_cgroups = pytest.mark.skipif(not CGROUPS_WRITABLE, reason="creating a memory cgroup needs root and Linux cgroups")


def _limited(limit: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "memory_limit.py"), limit, "--", sys.executable, "-c",
                           code], capture_output=True, text=True, timeout=120)


@needs_cgroups
def test_machine_reads_the_cgroup_limit_not_the_machines_ram():
    """Lab 00 plans on what the process may use: inside a 2 GB cgroup, 2 GB, whatever the machine has."""
    # First 1.2 GB written and read twice through the page cache, as a checkpoint is read: the kernel drops those
    # pages on demand, so they are not counted as used.
    done = _limited("2G", "import json, tempfile; from labkit.core import sizing\n"
                          "with tempfile.TemporaryFile() as f:\n"
                          "    for _ in range(12): f.write(bytes(100_000_000))\n"
                          "    for _ in range(2): f.seek(0); [None for _ in iter(lambda: f.read(10**8), b'')]\n"
                          "print(json.dumps([sizing.machine(), sizing.memory_limit_bytes()]))")
    assert done.returncode == 0, done.stderr
    here, limit = json.loads(done.stdout)
    assert here["memory_limited_by"] == "cgroup" and here["total_ram_bytes"] == limit
    assert limit == pytest.approx(2e9, abs=2**20)                # the kernel rounds the limit to whole pages
    assert 1.5e9 < here["available_ram_bytes"] <= 2e9
    assert "memory limit 2.0 GB: peak usage" in done.stderr
    outside = sizing.machine()
    assert outside["memory_limited_by"] == "RAM" or outside["total_ram_bytes"] != limit


@needs_cgroups
def test_a_process_tree_over_the_limit_is_killed_not_let_through():
    done = _limited("300M", "import numpy; numpy.ones(10**8); print('allocated 800 MB')")
    assert done.returncode == 137 and "allocated" not in done.stdout
    assert "the OOM killer stopped a process" in done.stderr


def test_memory_limit_sizes_are_decimal_unless_binary():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from memory_limit import parse_size
    finally:
        sys.path.pop(0)
    assert parse_size("16G") == 16_000_000_000 and parse_size("16GiB") == 16 * 2**30
    assert parse_size("1500M") == 1_500_000_000 and parse_size("4096") == 4096


def test_int8_instructions_name_the_best_the_cpu_has():
    """bench-scale records them: INT4 prefill (accuracy level 4) runs on them and explains gaps between machines."""
    assert sizing.int8_instructions({"avx2", "avx512f", "avx512_vnni", "amx_int8"}) == "AMX"
    assert sizing.int8_instructions({"avx2", "avx512f", "avx512_vnni"}) == "AVX-512 VNNI"
    assert sizing.int8_instructions({"avx2", "fma"}) == "AVX2 (no VNNI)"
    assert sizing.int8_instructions({"fp", "asimd", "asimddp"}) == "Arm dot product"
    assert sizing.int8_instructions(set()) == "unknown"
    assert sizing.machine()["int8_instructions"] == sizing.int8_instructions()
