"""The workshop server: one JupyterHub for a room, each attendee a Unix user of their own inside a memory cgroup.

`make hub` (`labkit hub`) starts JupyterHub with deploy/jupyterhub/jupyterhub_config.py, which wires this module
into JupyterHub's LocalProcessSpawner:

- **Attendees.** A hub name `ada` is the Unix user `phi-ada` (the prefix keeps a login from ever naming `root` or
  another account of the server), created on first login with a private home (0700). Their copy of the labs
  (`~/phi-lab/`) is written on first login; a later login adds labs that are new and never overwrites one.
- **One shared, read-only model cache.** The instructor fills the course's cache beforehand (`make course` on the
  server, once); attendees read it as `LABKIT_SHARED_CACHE` and make what it lacks (their own settings) in their
  own `~/phi-lab/models`, their runs in `~/phi-lab/runs`.
- **Limits from the course's measurements.** Each attendee's memory is the largest per-lab peak of the profile's
  measured first run (docs/measured/<profile>-course.json) plus a quarter, and their CPU the cores it was measured
  on. Enforced by the kernel: these servers have neither systemd nor Docker, and LocalProcessSpawner ignores
  `mem_limit`, so each single-user server joins a cgroup of its own before it drops root (cgroup v1 or v2).
- **Capacity.** Attendees x memory must fit the machine's RAM less a reserve for the hub: the hub says how many
  attendees that is when it starts and refuses the next server, with that number, rather than let the machine swap.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import stat
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
V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup")


class HubError(LabkitError):
    """The workshop server cannot start or serve an attendee; the message names the fix."""


# ------------------------------------------------------------------ limits and capacity
@dataclass(frozen=True)
class Limits:
    """What one attendee may use, and where the numbers come from."""

    profile: str
    memory_bytes: int
    cores: float
    basis: str


def attendee_limits(profile: str = "cpu") -> Limits:
    """Memory and CPU for one attendee of `profile`, from the course's measured first run of that profile."""
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
    """How many attendees this machine holds at `limits` without swapping."""
    total = total_bytes if total_bytes is not None else sizing.memory_limit_bytes()
    return max(0, (total - RESERVE_BYTES) // limits.memory_bytes)


def capacity_line(limits: Limits, seats: int, total_bytes: int | None = None) -> str:
    total = total_bytes if total_bytes is not None else sizing.memory_limit_bytes()
    return (f"{seats} attendees at most: {limits.memory_bytes / sizing.GB:.1f} GB and {limits.cores:g} cores each "
            f"({limits.profile} profile: {limits.basis}) on {total / sizing.GB:.1f} GB of RAM, "
            f"{RESERVE_BYTES / sizing.GB:.0f} GB kept for the hub")


# ------------------------------------------------------------------ attendees
@dataclass(frozen=True)
class Attendee:
    name: str          # the hub's
    unix: str          # the server's
    home: Path

    @property
    def labs(self) -> Path:
        return self.home / LABS

    def env(self, shared_cache: Path) -> dict[str, str]:
        """The course's environment variables in this attendee's server: their own cache and runs, the shared one."""
        return {"LABKIT_CACHE": str(self.labs / "models"), "LABKIT_RUNS": str(self.labs / "runs"),
                "LABKIT_SHARED_CACHE": str(shared_cache), "HF_HUB_OFFLINE": "1"}


def unix_name(hub_name: str) -> str:
    """`phi-<name>` for a hub name of lower-case letters and digits; anything else is refused."""
    if not re.fullmatch(NAME_PATTERN, hub_name):
        raise HubError(f"{hub_name!r} is not an attendee name here: use 1-20 lower-case letters and digits, starting "
                       "with a letter (ada, team7).")
    return PREFIX + hub_name


def attendee(hub_name: str) -> Attendee:
    unix = unix_name(hub_name)
    return Attendee(hub_name, unix, HOME_ROOT / unix)


def ensure_attendee(hub_name: str, exercises: Path) -> Attendee:
    """The attendee's Unix user (created the first time), private home, and their own copy of every lab."""
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
    """Delete the attendee's Unix user and home (after the workshop; the hub never does it by itself)."""
    subprocess.run(["userdel", "--remove", attendee(hub_name).unix], capture_output=True)


# ------------------------------------------------------------------ cgroups
def _v2() -> bool:
    return (V2 / "cgroup.controllers").exists()


def cgroups_available() -> str | None:
    """None when attendees' servers can be put in cgroups here, else why not and the fix."""
    if not sys.platform.startswith("linux"):
        return "memory limits need Linux cgroups"
    if os.geteuid() != 0:
        return "creating cgroups needs root: start the hub with sudo (`sudo make hub`)"
    if _v2():
        has_memory = "memory" in (V2 / "cgroup.controllers").read_text()
        return None if has_memory else "cgroup v2 without its memory controller"
    if not (V1 / "memory").is_dir() or not (V1 / "cpu").is_dir():
        return "no cgroup memory and cpu controllers are mounted under /sys/fs/cgroup"
    return None


class Cgroup:
    """One attendee's cgroup (memory and CPU), under `labkit-hub/`."""

    def __init__(self, unix: str):
        self.unix = unix

    def folders(self) -> list[Path]:
        if _v2():
            return [V2 / CGROUP / self.unix]
        return [V1 / "memory" / CGROUP / self.unix, V1 / "cpu" / CGROUP / self.unix]

    def create(self, limits: Limits) -> None:
        memory, quota_us, period_us = str(limits.memory_bytes), int(limits.cores * 100_000), 100_000
        if _v2():
            parent = V2 / CGROUP
            parent.mkdir(exist_ok=True)
            (V2 / "cgroup.subtree_control").write_text("+memory +cpu")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            folder = parent / self.unix
            folder.mkdir(exist_ok=True)
            (folder / "memory.max").write_text(memory)
            (folder / "memory.swap.max").write_text("0")
            (folder / "cpu.max").write_text(f"{quota_us} {period_us}")
            return
        memory_dir, cpu_dir = self.folders()
        for folder in (memory_dir, cpu_dir):
            folder.mkdir(parents=True, exist_ok=True)
        (memory_dir / "memory.limit_in_bytes").write_text(memory)
        if (memory_dir / "memory.memsw.limit_in_bytes").exists():     # no swapping past the limit either
            (memory_dir / "memory.memsw.limit_in_bytes").write_text(memory)
        (cpu_dir / "cpu.cfs_period_us").write_text(str(period_us))
        (cpu_dir / "cpu.cfs_quota_us").write_text(str(quota_us))

    def join(self, pid: int = 0) -> None:
        """Move `pid` (0: this process) in; its children are born inside. Runs before the server drops root."""
        for folder in self.folders():
            (folder / "cgroup.procs").write_text(str(pid or os.getpid()))

    def pids(self) -> list[int]:
        folder = self.folders()[0]
        try:
            return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def memory_limit(self) -> int:
        """The limit as the kernel keeps it (rounded down to a whole page)."""
        folder = self.folders()[0]
        return int((folder / ("memory.max" if _v2() else "memory.limit_in_bytes")).read_text())

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
    """Unix names of the attendees whose cgroup holds a live process."""
    root = (V2 if _v2() else V1 / "memory") / CGROUP
    if not root.is_dir():
        return []
    return sorted(f.name for f in root.iterdir() if f.is_dir() and Cgroup(f.name).pids())


def remove_all_cgroups() -> None:
    roots = [V2 / CGROUP] if _v2() else [V1 / "memory" / CGROUP, V1 / "cpu" / CGROUP]
    for root in roots:
        if root.is_dir():
            for folder in root.iterdir():
                if folder.is_dir():
                    Cgroup(folder.name).remove()
        if root.is_dir():
            root.rmdir()


def check_seat(unix: str, seats: int, limits: Limits) -> None:
    """Refuse a server beyond the machine's capacity (the attendee's own restart is not a new seat)."""
    others = [name for name in attendees_running() if name != unix]
    if len(others) >= seats:
        raise HubError(f"The workshop server is full: {len(others)} attendees are running, and it holds {seats} "
                       f"({limits.memory_bytes / sizing.GB:.1f} GB each). Ask the instructor to stop an idle server "
                       "(Admin page) or to run the hub on a bigger machine.")


# ------------------------------------------------------------------ can attendees read the course?
def unreadable_by_others(targets: list[Path]) -> list[str]:
    """For each path attendees need, the first folder on its way that other users cannot enter or read."""
    problems = []
    for target in targets:
        target = Path(target).resolve()
        for folder in [*reversed(target.parents), target]:
            mode = folder.stat().st_mode
            need = stat.S_IXOTH | (stat.S_IROTH if folder == target else 0)
            if stat.S_ISDIR(mode) and mode & need != need:
                problems.append(f"{folder} (mode {stat.filemode(mode)}, on the way to {target})")
                break
            if not stat.S_ISDIR(mode) and not mode & stat.S_IROTH:
                problems.append(f"{folder} (mode {stat.filemode(mode)})")
                break
    return problems


def check_attendees_can_run(python: Path, shared_cache: Path) -> None:
    """Attendees run the course's Python and read its files and cache as their own users: check it as `nobody`."""
    targets = [Path(python).resolve().parent, Path(python).parent, paths.REPO, shared_cache]
    problems = unreadable_by_others(targets)
    probe = None
    if not problems and shutil.which("runuser"):
        probe = subprocess.run(["runuser", "-u", "nobody", "--", str(python), "-c",
                                "import labkit, jupyterhub.singleuser"], capture_output=True, text=True)
    if problems or (probe is not None and probe.returncode):
        detail = "; ".join(problems) if problems else probe.stderr.strip().splitlines()[-1]
        raise HubError(f"Attendees run the course as their own Unix users and cannot use it here: {detail}. Install "
                       "the course where every user can read it, with a Python every user can run: `sudo git clone "
                       "<the course> /opt/phi-lab && cd /opt/phi-lab && sudo make install PYTHON=/usr/bin/python3.11 "
                       "&& sudo make hub` (README, \"Running the workshop on a server\").")


# ------------------------------------------------------------------ a readable copy for a privately installed course
_NOT_SERVED = {".git", "models", "runs", "exercises", "node_modules", "__pycache__", ".pytest_cache", "wheelhouse"}


def _link_tree(source: Path, target: Path, skip=lambda path: False) -> None:
    """Hardlink every file of `source` under `target` (a copy across file systems); folders 0755."""
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not skip(Path(folder) / d)]
        out = target / Path(folder).relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o755)
        for name in files:
            src = Path(folder) / name
            if skip(src) or src.is_symlink() and not src.exists():
                continue
            try:
                os.link(src, out / name)
            except OSError:
                shutil.copy2(src, out / name)
            if not (out / name).stat().st_mode & stat.S_IROTH:
                (out / name).chmod(0o644)


def system_python() -> Path:
    """A Python of this environment's version that every user can run (Debian's /usr/bin/python3.11, for one)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin", "/opt/python/bin"):
        candidate = Path(folder) / version
        if candidate.exists() and not unreadable_by_others([candidate]):
            return candidate
    raise HubError(f"The course's Python is private to its owner, and no {version} that every user can run was found "
                   f"in /usr/bin or /usr/local/bin: install one (`apt-get install {version} {version}-venv`), or "
                   "install the course where every user can read it (README, \"Running the workshop on a server\").")


def publish(dest: Path, cache: Path) -> tuple[Path, Path]:
    """A copy of the course every user can read, for a course installed privately (a home folder, a Python under
    /root): its files, its environment's packages on a system Python of the same version, and its model cache, all
    hardlinked (seconds, no extra disk on one file system). Returns (its Python, its model cache)."""
    base = system_python()
    tmp = dest.with_name(f".{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tmp.chmod(0o755)
    _link_tree(paths.REPO, tmp / "course",
               skip=lambda p: p.name in _NOT_SERVED or p.name.startswith(".venv") or p.name.startswith(".git"))
    _link_tree(cache, tmp / "models", skip=lambda p: p.name.startswith((".tmp-", ".old-")) or p.suffix == ".lock")
    env = tmp / "env"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(env)], check=True)
    packages = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)))
    target = next((env / "lib").glob("python3*")) / "site-packages"
    _link_tree(packages, target, skip=lambda p: "__editable__" in p.name and "labkit" in p.name)
    (target / "labkit-course.pth").write_text(str(dest / "course") + "\n")
    kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    for spec in kernels.glob("*/kernel.json"):
        out = env / "share" / "jupyter" / "kernels" / spec.parent.name
        _link_tree(spec.parent, out)
        kernel = json.loads(spec.read_text())
        kernel["argv"][0] = str(dest / "env" / "bin" / "python")
        (out / "kernel.json").unlink()
        (out / "kernel.json").write_text(json.dumps(kernel, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest / "env" / "bin" / "python", dest / "models"


# ------------------------------------------------------------------ the hub itself
CONFIG = paths.REPO / "deploy" / "jupyterhub" / "jupyterhub_config.py"
DEFAULT_STATE = Path("/srv/phi-lab-hub")    # the labs handed out, a served copy when needed, the hub's database
PROXY_DIR = paths.REPO / "deploy" / "jupyterhub"


def proxy_command() -> Path:
    """configurable-http-proxy (npm), installed beside the config with `npm ci` the first time."""
    proxy = PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if proxy.exists():
        return proxy
    npm = shutil.which("npm")
    if npm is None:
        raise HubError("JupyterHub's proxy, configurable-http-proxy, comes from npm, and npm is not installed: install "
                       "Node.js 20 or newer (`apt-get install nodejs npm`), then run `make hub` again.")
    run = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROXY_DIR,
                         capture_output=True, text=True)
    if run.returncode or not proxy.exists():
        raise HubError(f"`npm ci` in {PROXY_DIR} failed: {run.stderr.strip()[-500:]}")
    return proxy


@dataclass
class HubSettings:
    """What `labkit hub` hands the config file (as LABKIT_HUB_* variables)."""

    port: int
    password: str
    profile: str
    exercises: Path
    shared_cache: Path
    python: Path
    seats: int
    limits: Limits
    state: Path          # the hub's database, cookie secret and logs
    internal_ports: tuple[int, int] = (8081, 8001)   # the hub's API and the proxy's, on 127.0.0.1

    def environ(self) -> dict[str, str]:
        return {"LABKIT_HUB_PORT": str(self.port), "LABKIT_HUB_PASSWORD": self.password,
                "LABKIT_HUB_INTERNAL_PORTS": ",".join(map(str, self.internal_ports)),
                "LABKIT_HUB_PROFILE": self.profile, "LABKIT_HUB_EXERCISES": str(self.exercises),
                "LABKIT_HUB_SHARED_CACHE": str(self.shared_cache), "LABKIT_HUB_PYTHON": str(self.python),
                "LABKIT_HUB_SEATS": str(self.seats), "LABKIT_HUB_PROXY": str(proxy_command()),
                "LABKIT_HUB_LIMITS": json.dumps(self.limits.__dict__)}


def settings_from_environ() -> HubSettings:
    """The config file's side of `HubSettings.environ`."""
    env = os.environ
    missing = [k for k in ("LABKIT_HUB_PASSWORD", "LABKIT_HUB_EXERCISES", "LABKIT_HUB_SHARED_CACHE") if k not in env]
    if missing:
        raise HubError(f"{', '.join(missing)} not set: start the hub with `make hub` (or `python -m labkit hub`), "
                       "which sets them.")
    return HubSettings(int(env.get("LABKIT_HUB_PORT", "8000")), env["LABKIT_HUB_PASSWORD"],
                       env.get("LABKIT_HUB_PROFILE", "cpu"), Path(env["LABKIT_HUB_EXERCISES"]),
                       Path(env["LABKIT_HUB_SHARED_CACHE"]), Path(env.get("LABKIT_HUB_PYTHON", sys.executable)),
                       int(env["LABKIT_HUB_SEATS"]), Limits(**json.loads(env["LABKIT_HUB_LIMITS"])), Path.cwd(),
                       tuple(int(p) for p in env.get("LABKIT_HUB_INTERNAL_PORTS", "8081,8001").split(",")))


def prepare(port: int = 8000, profile: str = "cpu", state: Path | None = None, exercises: Path | None = None,
            seats: int | None = None, password: str | None = None) -> HubSettings:
    """Every check before JupyterHub starts (root, cgroups, a readable course, capacity, the password); the labs."""
    from .course import write_exercises

    why = cgroups_available()
    if why:
        raise HubError(f"The hub puts each attendee in a cgroup of their own, and cannot here: {why}.")
    state = Path(state or DEFAULT_STATE)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    shared, python = paths.cache_dir(), Path(sys.executable)
    private = unreadable_by_others([python.resolve().parent, python.parent, paths.REPO, shared])
    if private:
        print(f"The course is private to its owner ({private[0]}): attendees get a readable copy in {state / 'served'} "
              "(hardlinks).", flush=True)
        python, shared = publish(state / "served", shared)
    check_attendees_can_run(python, shared)
    limits = attendee_limits(profile)
    fits = capacity(limits)
    if fits < 1:
        raise HubError(f"This machine cannot hold one attendee: {capacity_line(limits, 0)}.")
    if seats is not None and seats > fits:
        raise HubError(f"--seats {seats} is more than this machine holds: {capacity_line(limits, fits)}. Lower it, "
                       "or use a bigger server (README, \"Running the workshop on a server\").")
    password = password or os.environ.get("LABKIT_HUB_PASSWORD") or secrets.token_urlsafe(9)
    if len(password) < 8:
        raise HubError("The attendees' password needs at least 8 characters (JupyterHub's shared-password rule).")
    hub_state = state / "hub"
    hub_state.mkdir(exist_ok=True)
    hub_state.chmod(0o700)                    # the hub's database and cookie secret: root only
    if exercises is None:
        exercises = state / "labs"
        write_exercises(exercises)
    return HubSettings(port, password, profile, Path(exercises), shared, python, seats or fits, limits, hub_state,
                       (_free_port(), _free_port()))


def _free_port() -> int:
    """A free loopback port for the hub's and the proxy's APIs: two hubs (or a hub and a test) never collide."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(settings: HubSettings) -> int:
    """Run JupyterHub until Ctrl+C (or SIGTERM); then stop every attendee's server and remove their cgroups."""
    import signal

    env = dict(os.environ, **settings.environ())
    log = settings.state / "jupyterhub.log"
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=settings.state, env=env,
                           stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    url = f"http://{'127.0.0.1'}:{settings.port}/"
    print(f"The workshop hub: {url}  (attendees log in with any name of lower-case letters and digits)")
    print(f"password: {settings.password}")
    print(capacity_line(settings.limits, settings.seats))
    print(f"log: {log}. Stop it with Ctrl+C.", flush=True)
    try:
        while hub.poll() is None and not stop["now"]:
            time.sleep(0.5)
    finally:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)      # JupyterHub stops the servers it started and its proxy
            try:
                hub.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        remove_all_cgroups()
    if hub.returncode and not stop["now"]:
        print(f"error: JupyterHub stopped (exit {hub.returncode}); the end of {log}:\n"
              + "\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
        return 1
    print("The hub and every attendee's server are stopped.")
    return 0
