"""Run a command and measure its wall time and the peak resident memory of its whole process tree.

`resource.getrusage(RUSAGE_CHILDREN)` reports only the largest single process, and `/usr/bin/time`
is not on every laptop, so the tree's resident set (the command and every process it starts) is
sampled with psutil every `interval` seconds; the kernel's own per-process maximum (`ru_maxrss`
of the direct child) is a floor the sample cannot miss. Used by `make bench-scale` (lab 01).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


@dataclass
class Measured:
    """What one measured command did. Lab 01."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    output: str


def _tree_rss(process) -> int:
    """Resident bytes of `process` and all its descendants (processes that vanish meanwhile count 0). Lab 01."""
    import psutil

    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(cmd: list[str], interval: float = 0.25, env=None, cwd=None) -> Measured:
    """Run `cmd` to completion; return its exit code, seconds, peak tree RSS and combined output. Lab 01."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    watched = psutil.Process(proc.pid)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak, returncode = 0, None
    while returncode is None:
        peak = max(peak, _tree_rss(watched))
        if hasattr(os, "wait4"):
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:   # reaped: the kernel's maximum RSS of the child itself (kB on Linux, bytes on macOS)
                returncode = os.waitstatus_to_exitcode(status)
                proc.returncode = returncode
                peak = max(peak, usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024))
                break
        else:
            returncode = proc.poll()
            if returncode is not None:
                break
        time.sleep(interval)
    seconds = time.perf_counter() - started
    reader.join()
    return Measured(returncode, seconds, peak, "".join(chunks))
