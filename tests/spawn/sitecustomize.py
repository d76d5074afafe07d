"""Every Python the test suite starts imports this first (tests/conftest.py puts this folder on PYTHONPATH).

It makes each child process behave as on macOS and Windows, where multiprocessing starts workers with
`spawn` and `os.fork` is absent or unsafe: a code path that forks fails here too, instead of only on an
attendee's laptop. labkit's own child processes (memwatch, bench-scale, the peer worker, AWQ and the vision
export in their own interpreters, the course runner's kernels) are fresh interpreters started by `subprocess`.
"""

import multiprocessing
import os


def _no_fork(*args, **kwargs):
    raise RuntimeError("os.fork() was called: macOS and Windows attendees have no safe fork. Start a fresh "
                       "interpreter with subprocess, or use multiprocessing's 'spawn' context.")


multiprocessing.set_start_method("spawn", force=True)
if hasattr(os, "fork"):
    os.fork = _no_fork
os.environ.setdefault("LABKIT_SPAWN_ONLY", "1")   # the suite checks that children really ran with this
