"""Run a command and measure its wall time and the peak resident memory of its whole process tree.

`resource.getrusage(RUSAGE_CHILDREN)` reports only the largest single process, and `/usr/bin/time`
is not on every laptop, so the tree's resident set (the command and every process it starts) is
sampled with psutil every `interval` seconds; the kernel's own per-process maximum (`ru_maxrss`
of the direct child) is a floor the sample cannot miss. Used by `make bench-scale` (lab 01); `PeakWatch` does the
same for whatever this process starts inside a `with` block (`make course`: each notebook's kernel).

`run` also records the peak of anonymous memory (the resident set less its file-backed and shared pages: Linux's
`RssAnon`): a memory-mapped checkpoint or model counts in the resident set while its pages are cached, yet the kernel
can drop those pages under pressure; anonymous memory it cannot. Where shared pages are not reported (macOS) it
equals the resident set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ..core import children


@dataclass
class Measured:
    """What one measured command did. Lab 01."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    output: str
    peak_anon_bytes: int = 0


def _tree_memory(process) -> tuple[int, int]:
    """Resident and anonymous bytes of `process` and all its descendants (processes that vanish meanwhile count
    0). Lab 01."""
    import psutil

    try:
        return _memory_sum([process, *process.children(recursive=True)])
    except psutil.Error:
        return 0, 0


def _memory_sum(processes) -> tuple[int, int]:
    """Summed resident and anonymous bytes of `processes` (anonymous: resident less `shared`, statm's file-backed
    and shared pages on Linux)."""
    import psutil

    rss = anon = 0
    for member in processes:
        try:
            info = member.memory_info()
        except psutil.Error:
            continue
        rss += info.rss
        anon += info.rss - getattr(info, "shared", 0)
    return rss, anon


def run(cmd: list[str], interval: float = 0.25, env=None, cwd=None) -> Measured:
    """Run `cmd` to completion; return its exit code, seconds, peak tree RSS and combined output. Lab 01."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=children.python_env(env),
                            cwd=cwd, **children.TEXT)
    watched = psutil.Process(proc.pid)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak = peak_anon = 0
    returncode = None
    while returncode is None:
        rss, anon = _tree_memory(watched)
        peak, peak_anon = max(peak, rss), max(peak_anon, anon)
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
    return Measured(returncode, seconds, peak, "".join(chunks), peak_anon)


class PeakWatch:
    """`with PeakWatch() as watch:` samples the resident memory of every process this one starts meanwhile.

    `watch.peak_children_bytes` is the largest sum seen (this process itself excluded: `labkit course` only waits
    for papermill's kernel); `watch.peak_bytes` the largest with this process counted too (a lab's step that runs
    partly here, partly in a child: what a memory limit sees). All labs (`make course` records it per notebook,
    lab 03 per step)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak_children_bytes, self.peak_bytes = interval, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                children = []
            below = _memory_sum(children)[0]
            self.peak_children_bytes = max(self.peak_children_bytes, below)
            self.peak_bytes = max(self.peak_bytes, below + _memory_sum([me])[0])
            self._stop.wait(self.interval)

    def start(self) -> PeakWatch:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; return `peak_bytes`."""
        self._stop.set()
        self._thread.join()
        return self.peak_bytes

    def __enter__(self) -> PeakWatch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
