"""The memory of a whole process tree (labkit.memwatch)."""

import sys


def test_memwatch_counts_the_whole_process_tree(tmp_path):
    """A child holding ~300 MB that starts a grandchild holding ~300 MB: the tree's peak is their sum."""
    from labkit import memwatch

    hold = "import numpy, time; a = numpy.ones(300 * 2**20, dtype=numpy.uint8); time.sleep(1.5)"
    parent = (f"import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', {hold!r}]); {hold}; "
              "child.wait(); print('done'); sys.exit(7)")
    run = memwatch.run([sys.executable, "-c", parent], interval=0.1)
    assert run.returncode == 7 and "done" in run.output
    assert run.peak_rss_bytes > 2 * 300 * 2**20            # both processes at once, not the larger one alone
    assert run.seconds >= 1.5


def test_memwatch_tells_mapped_file_pages_from_anonymous_memory(tmp_path):
    """A process reading a 256 MB file through mmap and holding 128 MB of its own: both count in the resident set,
    only the 128 MB in anonymous memory (what the kernel cannot drop under pressure)."""
    from labkit import memwatch

    mapped = tmp_path / "weights.bin"
    with mapped.open("wb") as f:
        f.truncate(256 * 2**20)
    hold = (f"import mmap, numpy, time; f = open({str(mapped)!r}, 'rb'); "
            "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); w = numpy.frombuffer(m, dtype=numpy.uint8); "
            "total = int(w[::4096].sum()); a = numpy.ones(128 * 2**20, dtype=numpy.uint8); time.sleep(1.0)")
    run = memwatch.run([sys.executable, "-c", hold], interval=0.1)
    assert run.returncode == 0, run.output
    assert run.peak_rss_bytes > (256 + 128) * 2**20
    assert 128 * 2**20 < run.peak_anon_bytes < run.peak_rss_bytes - 200 * 2**20
