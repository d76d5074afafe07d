"""Who attends a workshop server and what each may use: Unix users, homes, limits, capacity, cgroups. All labs.

The workshop server (`labkit.workshop.server`, `make hub`) serves the course with JupyterHub; this module holds
the rules it applies to each attendee:

- **Attendees.** A hub name `ada` is the Unix user `phi-ada` (the prefix keeps a login from ever naming `root` or
  another account of the server), created on first login with a private home (0700). Their copy of the labs
  (`~/phi-lab/`) is written on first login; a later login adds labs that are new and never overwrites one. Their
  own models and runs go to `~/phi-lab/models` and `~/phi-lab/runs`; the instructor's cache is read-only for them.
- **Limits from the course's measurements.** Each attendee's memory is the largest per-lab peak of the profile's
  measured first run (docs/measured/<profile>-course.json) plus a quarter, and their CPU the cores it was measured
  on. Enforced by the kernel: these servers have neither systemd nor Docker, and JupyterHub's LocalProcessSpawner
  ignores `mem_limit`, so each single-user server joins a cgroup of its own (v1 or v2) before it drops root.
- **Capacity.** Attendees x memory must fit the machine's RAM less a reserve for the hub: the hub refuses the next
  server, with that number, rather than let the machine swap.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import paths, sizing
from ..core.errors import InputError, LabkitError

PREFIX = "phi-"                        # Unix names of attendees: phi-<hub name>
NAME_PATTERN = r"[a-z][a-z0-9]{0,19}"  # hub names JupyterHub accepts (Authenticator.username_pattern)
HOME_ROOT = Path("/home")
LABS = "phi-lab"                       # the attendee's folder in their home
CGROUP = "labkit-hub"                  # every attendee's cgroup lives under this one
HEADROOM = 1.25                        # memory limit = measured peak x this
RESERVE_BYTES = int(2 * sizing.GB)     # kept for the hub, the proxy and the system
CGROUPS = Path("/sys/fs/cgroup")     # v2: one tree; v1: one tree per controller (memory/, cpu/)


class HubError(LabkitError):
    """The workshop server cannot start or serve an attendee; the message names the fix. All labs."""


class RoomFull(HubError):
    """No seat left on the server: the hub shows the attendee this message. All labs."""


# ------------------------------------------------------------------ limits and capacity
@dataclass(frozen=True)
class Limits:
    """What one attendee may use, and where the numbers come from. All labs."""

    profile: str
    memory_bytes: int
    cores: float
    basis: str


def attendee_limits(profile: str = "cpu") -> Limits:
    """Memory and CPU for one attendee of `profile`, from the course's measured first run of that profile. All labs."""
    sheet_path = paths.REPO / "docs" / "measured" / f"{profile}-course.json"
    if not sheet_path.exists():
        measured = sorted(p.name.removesuffix("-course.json") for p in sheet_path.parent.glob("*-course.json"))
        raise InputError(f"No measured course for the {profile!r} profile ({sheet_path.name}): the hub sizes attendees "
                         f"from one. Measured: {', '.join(measured)}.")
    sheet = paths.read_json(sheet_path)
    lab, peak = max(((lab, row["peak_rss_bytes"]) for lab, row in sheet["labs"].items()), key=lambda x: x[1])
    half_gb = 0.5 * sizing.GB
    memory = int(math.ceil(peak * HEADROOM / half_gb) * half_gb)
    return Limits(profile, memory, float(sheet.get("cores", 2)),
                  f"lab {lab}'s peak {peak / sizing.GB:.1f} GB in the measured {profile} course "
                  f"({sheet['measured_on']}) + {HEADROOM - 1:.0%}, on {sheet.get('cores', 2)} cores")


def capacity(limits: Limits, total_bytes: int | None = None) -> int:
    """How many attendees this machine holds at `limits` without swapping. All labs."""
    total = total_bytes if total_bytes is not None else sizing.memory_limit_bytes()
    return max(0, (total - RESERVE_BYTES) // limits.memory_bytes)


def capacity_line(limits: Limits, seats: int, total_bytes: int | None = None) -> str:
    """The hub's one line on how many attendees it holds and why. All labs."""
    total = total_bytes if total_bytes is not None else sizing.memory_limit_bytes()
    return (f"{seats} attendees at most: {limits.memory_bytes / sizing.GB:.1f} GB and {limits.cores:g} cores each "
            f"({limits.profile} profile: {limits.basis}) on {total / sizing.GB:.1f} GB of RAM, "
            f"{RESERVE_BYTES / sizing.GB:.0f} GB kept for the hub")


# ------------------------------------------------------------------ attendees
@dataclass(frozen=True)
class Attendee:
    """One attendee: their hub name, Unix user and home. All labs."""

    name: str          # the hub's
    unix: str          # the server's
    home: Path

    @property
    def labs(self) -> Path:
        return self.home / LABS

    def env(self, shared_cache: Path) -> dict[str, str]:
        """The course's environment variables in this attendee's server: their own cache and runs, the shared one.

        OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads spin while they wait for work, which on a laptop saves a
        little latency and on a shared server burns the cores another attendee's fine-tune needs (three small
        training loops at once on 2 cores: 35 s each spinning, 6-8 s passive, 3 s alone)."""
        return {"LABKIT_CACHE": str(self.labs / "models"), "LABKIT_RUNS": str(self.labs / "runs"),
                "LABKIT_SHARED_CACHE": str(shared_cache), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def unix_name(hub_name: str) -> str:
    """`phi-<name>` for a hub name of lower-case letters and digits; anything else is refused. All labs."""
    if not re.fullmatch(NAME_PATTERN, hub_name):
        raise HubError(f"{hub_name!r} is not an attendee name here: use 1-20 lower-case letters and digits, starting "
                       "with a letter (ada, team7).")
    return PREFIX + hub_name


def attendee(hub_name: str) -> Attendee:
    """The attendee a hub name stands for (whether or not their Unix user exists yet). All labs."""
    unix = unix_name(hub_name)
    return Attendee(hub_name, unix, HOME_ROOT / unix)


def ensure_attendee(hub_name: str, exercises: Path) -> Attendee:
    """The attendee's Unix user (created the first time), private home, and their own copy of every lab. All labs."""
    import pwd

    person = attendee(hub_name)
    try:
        pwd.getpwnam(person.unix)
    except KeyError:
        run = subprocess.run(["useradd", "--create-home", "--home-dir", str(person.home), "--shell", "/bin/bash",
                              "--user-group", "--comment", f"workshop attendee {hub_name}", person.unix],
                             capture_output=True, text=True)
        if run.returncode:
            raise HubError(f"Could not create the Unix user {person.unix} ({run.stderr.strip()}): the hub runs as root "
                           "(`sudo make hub`).") from None
    entry = pwd.getpwnam(person.unix)
    person.home.mkdir(mode=0o700, exist_ok=True)
    os.chown(person.home, entry.pw_uid, entry.pw_gid)
    person.home.chmod(0o700)                     # useradd's default may be 0755: homes are private
    for folder in (person.labs, person.labs / "models", person.labs / "runs"):
        folder.mkdir(exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    for notebook in sorted(Path(exercises).glob("*.ipynb")):
        copy = person.labs / notebook.name
        if copy.exists():                        # their own work: never overwritten
            continue
        tmp = copy.with_name(f".{copy.name}.tmp")
        shutil.copyfile(notebook, tmp)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
        tmp.replace(copy)
    return person


def remove_attendee(hub_name: str) -> None:
    """Delete the attendee's Unix user and home (after the workshop; the hub never does it by itself). All labs."""
    subprocess.run(["userdel", "--remove", attendee(hub_name).unix], capture_output=True)


# ------------------------------------------------------------------ cgroups
def _v2() -> bool:
    return (CGROUPS / "cgroup.controllers").exists()


def cgroups_available() -> str | None:
    """None when attendees' servers can be put in cgroups here, else why not and the fix. All labs."""
    if not sys.platform.startswith("linux"):
        return "memory limits need Linux cgroups"
    if os.geteuid() != 0:
        return "creating cgroups needs root: start the hub with sudo (`sudo make hub`)"
    if _v2():
        has_memory = "memory" in (CGROUPS / "cgroup.controllers").read_text(encoding="utf-8")
        return None if has_memory else "cgroup v2 without its memory controller"
    if not (CGROUPS / "memory").is_dir() or not (CGROUPS / "cpu").is_dir():
        return "no cgroup memory and cpu controllers are mounted under /sys/fs/cgroup"
    return None


class Cgroup:
    """One attendee's cgroup (memory and CPU), under `labkit-hub/`. All labs."""

    def __init__(self, unix: str):
        self.unix = unix

    def folders(self) -> list[Path]:
        if _v2():
            return [CGROUPS / CGROUP / self.unix]
        return [CGROUPS / "memory" / CGROUP / self.unix, CGROUPS / "cpu" / CGROUP / self.unix]

    def create(self, limits: Limits) -> None:
        memory, quota_us, period_us = str(limits.memory_bytes), int(limits.cores * 100_000), 100_000
        if _v2():
            parent = CGROUPS / CGROUP
            parent.mkdir(exist_ok=True)
            (CGROUPS / "cgroup.subtree_control").write_text("+memory +cpu", encoding="utf-8")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu", encoding="utf-8")
            folder = parent / self.unix
            folder.mkdir(exist_ok=True)
            (folder / "memory.max").write_text(memory, encoding="utf-8")
            (folder / "memory.swap.max").write_text("0", encoding="utf-8")
            (folder / "cpu.max").write_text(f"{quota_us} {period_us}", encoding="utf-8")
            return
        memory_dir, cpu_dir = self.folders()
        for folder in (memory_dir, cpu_dir):
            folder.mkdir(parents=True, exist_ok=True)
        (memory_dir / "memory.limit_in_bytes").write_text(memory, encoding="utf-8")
        if (memory_dir / "memory.memsw.limit_in_bytes").exists():     # no swapping past the limit either
            (memory_dir / "memory.memsw.limit_in_bytes").write_text(memory, encoding="utf-8")
        (cpu_dir / "cpu.cfs_period_us").write_text(str(period_us), encoding="utf-8")
        (cpu_dir / "cpu.cfs_quota_us").write_text(str(quota_us), encoding="utf-8")

    def join(self, pid: int = 0) -> None:
        """Move `pid` (0: this process) in; its children are born inside. Runs before the server drops root."""
        for folder in self.folders():
            (folder / "cgroup.procs").write_text(str(pid or os.getpid()), encoding="utf-8")

    def pids(self) -> list[int]:
        folder = self.folders()[0]
        try:
            return [int(p) for p in (folder / "cgroup.procs").read_text(encoding="utf-8").split()]
        except FileNotFoundError:
            return []

    def memory_limit(self) -> int:
        """The limit as the kernel keeps it (rounded down to a whole page)."""
        folder = self.folders()[0]
        return int((folder / ("memory.max" if _v2() else "memory.limit_in_bytes")).read_text(encoding="utf-8"))

    def remove(self, timeout_s: float = 10) -> None:
        """Kill what is left inside and remove the cgroup."""
        import signal

        deadline = time.time() + timeout_s
        for folder in self.folders():
            while folder.exists():
                for pid in self.pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    folder.rmdir()
                except OSError:
                    if time.time() > deadline:
                        raise HubError(f"Could not remove {folder}: processes {self.pids()} are still in it.") from None
                    time.sleep(0.2)
            try:
                folder.parent.rmdir()            # the last attendee's: labkit-hub/ goes too
            except OSError:
                pass


def attendees_running() -> list[str]:
    """Unix names of the attendees whose cgroup holds a live process. All labs."""
    root = (CGROUPS if _v2() else CGROUPS / "memory") / CGROUP
    if not root.is_dir():
        return []
    return sorted(f.name for f in root.iterdir() if f.is_dir() and Cgroup(f.name).pids())


def remove_all_cgroups() -> None:
    """Every attendee's cgroup and the hub's own, with anything left running in them (the hub has stopped). All labs."""
    roots = [CGROUPS / CGROUP] if _v2() else [CGROUPS / "memory" / CGROUP, CGROUPS / "cpu" / CGROUP]
    for root in roots:
        if root.is_dir():
            for folder in root.iterdir():
                if folder.is_dir():
                    Cgroup(folder.name).remove()
        if root.is_dir():
            root.rmdir()


def check_seat(unix: str, seats: int, limits: Limits) -> None:
    """Refuse a server beyond the machine's capacity (the attendee's own restart is not a new seat). All labs."""
    others = [name for name in attendees_running() if name != unix]
    if len(others) >= seats:
        raise RoomFull(f"The workshop server is full: {len(others)} attendees are running, and it holds {seats} "
                       f"({limits.memory_bytes / sizing.GB:.1f} GB each). Ask the instructor to stop an idle server "
                       "(Admin page) or to run the hub on a bigger machine.")
