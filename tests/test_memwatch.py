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
