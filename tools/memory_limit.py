"""Run a command under a hard memory limit, as a 16 GB laptop would: `python tools/memory_limit.py 16G -- CMD …`.

Resident-memory samples count mapped file pages and miss short peaks; only a hard limit proves a run fits. This
puts the command in a memory cgroup of its own (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes` with swap
held to the same limit where the kernel accounts it), so a process tree that needs more is killed by the kernel's
OOM killer instead of quietly using the machine's spare RAM. Needs root (or a delegated cgroup);
`systemd-run --scope -p MemoryMax=16G CMD` does the same where systemd runs. The cgroup is removed afterwards and
its peak usage printed. labkit reads the limit back (`labkit.sizing.memory_limit_bytes`), so `make course` records
the limit each run had.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")


def parse_size(text: str) -> int:
    """Bytes of `16G` (10**9: a little under a 16 GiB laptop's RAM, stricter than it), `16GiB`, `15000M` or a number."""
    text = text.strip().upper().removesuffix("B")
    binary = text.endswith("I")
    text = text.removesuffix("I")
    units = {"K": 1, "M": 2, "G": 3}
    if text and text[-1] in units:
        return int(float(text[:-1]) * (1024 if binary else 1000) ** units[text[-1]])
    return int(text)


def create(limit: int, name: str) -> tuple[Path, str]:
    """A fresh cgroup holding `limit` bytes; returns (folder, peak-usage file)."""
    if (V2 / "cgroup.controllers").exists():
        folder = V2 / name
        folder.mkdir()
        (folder / "memory.max").write_text(str(limit), encoding="utf-8")
        (folder / "memory.swap.max").write_text("0", encoding="utf-8")
        return folder, "memory.peak"
    if V1.is_dir():
        folder = V1 / name
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(str(limit), encoding="utf-8")
        if (folder / "memory.memsw.limit_in_bytes").exists():
            (folder / "memory.memsw.limit_in_bytes").write_text(str(limit), encoding="utf-8")
        return folder, "memory.max_usage_in_bytes"
    raise SystemExit("No cgroup memory controller here (Linux with cgroup v1 or v2 needed); on systemd machines "
                     "use `systemd-run --scope -p MemoryMax=16G CMD`.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("limit", help="e.g. 16G (16 x 10**9 bytes), 16GiB, 15000M")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. 16G -- make course")
    if not sys.platform.startswith("linux"):
        raise SystemExit("A hard memory limit needs Linux's cgroups. On macOS or Windows run the command as it is and "
                         "read lab 00's and `make course`'s peak-memory figures instead.")
    if os.geteuid() != 0:
        raise SystemExit("Creating a memory cgroup needs root: run with sudo, or use "
                         f"`systemd-run --user --scope -p MemoryMax={args.limit} {' '.join(command)}`.")
    limit = parse_size(args.limit)
    folder, peak_file = create(limit, f"labkit-{os.getpid()}-{int(time.time())}")
    try:
        # The child joins the cgroup before it execs the command: everything it starts is inside.
        def join():
            (folder / "cgroup.procs").write_text(str(os.getpid()), encoding="utf-8")
        code = subprocess.call(command, preexec_fn=join)
        code = 128 - code if code < 0 else code     # killed by a signal: a shell's 128 + signal
        peak = (folder / peak_file).read_text(encoding="utf-8").strip() if (folder / peak_file).exists() else "?"
        oom_file = folder / "memory.oom_control"
        oom = oom_file.read_text(encoding="utf-8") if oom_file.exists() else ""
        killed = "oom_kill " in oom and not oom.split("oom_kill ")[1].startswith("0")
        print(f"memory limit {limit / 1e9:.1f} GB: peak usage (page cache included) "
              f"{int(peak) / 1e9:.2f} GB{'; the OOM killer stopped a process' if killed else ''}; exit {code}",
              file=sys.stderr)
        return code
    finally:
        for _ in range(20):
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
