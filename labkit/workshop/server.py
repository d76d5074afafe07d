"""The workshop server: `make hub` (`labkit hub`) runs JupyterHub for a room. All labs.

JupyterHub starts with deploy/jupyterhub/jupyterhub_config.py, which applies `labkit.workshop.attendees` to its
LocalProcessSpawner: one Unix user, private home, copy of the labs and memory cgroup per attendee, the course's
model cache shared read-only. This module does what comes before and after: every check before the hub starts
(root, cgroups, a course attendees' users can read, the machine's capacity, the password), a readable copy of a
course installed privately, starting JupyterHub with its proxy, and stopping it with every attendee's server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from .attendees import HubError, Limits, attendee_limits, capacity, capacity_line, cgroups_available, remove_all_cgroups


# ------------------------------------------------------------------ can attendees read the course?
def unreadable_by_others(targets: list[Path]) -> list[str]:
    """For each path attendees need, the first folder on its way that other users cannot enter or read. All labs."""
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


def check_attendees_can_run(python: Path, shared_cache: Path, course: Path = paths.REPO) -> None:
    """Attendees run the course's Python and read its files and cache as their own users: checked as `nobody`.
    All labs."""
    targets = [Path(python).resolve().parent, Path(python).parent, course, shared_cache]
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
    """Hardlink every file of `source` under `target` (copied across file systems, and where only its owner may read
    it); folders 0755."""
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not skip(Path(folder) / d)]
        out = target / Path(folder).relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o755)
        for name in files:
            src = Path(folder) / name
            if skip(src) or src.is_symlink() and not src.exists():
                continue
            if src.stat().st_mode & stat.S_IROTH:
                try:
                    os.link(src, out / name)
                    continue
                except OSError:
                    pass
            shutil.copy2(src, out / name)      # a private file is copied: its link would share (and open) its mode
            (out / name).chmod(0o644)


def system_python() -> Path:
    """A Python of this environment's version every user can run (Debian's /usr/bin/python3.11, say). All labs."""
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
    hardlinked (seconds, no extra disk on one file system). Returns (its Python, its model cache). All labs."""
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
    (target / "labkit-course.pth").write_text(str(dest / "course") + "\n", encoding="utf-8")
    for data in ("etc", "share"):     # JupyterLab's assets and server extensions, the kernel specs
        if (Path(sys.prefix) / data).is_dir():
            _link_tree(Path(sys.prefix) / data, env / data)
    for spec in (Path(sys.prefix) / "share" / "jupyter" / "kernels").glob("*/kernel.json"):
        out = env / "share" / "jupyter" / "kernels" / spec.parent.name
        kernel = json.loads(spec.read_text(encoding="utf-8"))
        kernel["argv"][0] = str(dest / "env" / "bin" / "python")
        (out / "kernel.json").unlink()
        (out / "kernel.json").write_text(json.dumps(kernel, indent=1), encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest / "env" / "bin" / "python", dest / "models"


# ------------------------------------------------------------------ the hub itself
CONFIG = paths.REPO / "deploy" / "jupyterhub" / "jupyterhub_config.py"
INSTRUCTOR = "instructor"                   # the hub's admin user (JupyterHub wants a 32-character password)
DEFAULT_STATE = Path("/srv/phi-lab-hub")    # the labs handed out, a served copy when needed, the hub's database
PROXY_DIR = paths.REPO / "deploy" / "jupyterhub"


def proxy_command() -> Path:
    """configurable-http-proxy (npm), installed beside the config with `npm ci` the first time. All labs."""
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
    """What `labkit hub` hands the config file (as LABKIT_HUB_* variables). All labs."""

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
    course: Path = paths.REPO                        # the course attendees' servers read (the served copy, if any)
    admin_password: str = ""                         # the instructor's (user `instructor`): the Admin page

    @property
    def lab_settings(self) -> Path:
        """JupyterLab's defaults for attendees (deploy/jupyterhub/lab-settings/overrides.json): every cell rendered,
        so the browser's find and the keyboard reach all of a lab; no news or update prompts over the notebook."""
        return self.course / "deploy" / "jupyterhub" / "lab-settings"

    def environ(self) -> dict[str, str]:
        return {"LABKIT_HUB_PORT": str(self.port), "LABKIT_HUB_PASSWORD": self.password,
                "LABKIT_HUB_INTERNAL_PORTS": ",".join(map(str, self.internal_ports)),
                "LABKIT_HUB_COURSE": str(self.course), "LABKIT_HUB_ADMIN_PASSWORD": self.admin_password,
                "LABKIT_HUB_PROFILE": self.profile, "LABKIT_HUB_EXERCISES": str(self.exercises),
                "LABKIT_HUB_SHARED_CACHE": str(self.shared_cache), "LABKIT_HUB_PYTHON": str(self.python),
                "LABKIT_HUB_SEATS": str(self.seats), "LABKIT_HUB_PROXY": str(proxy_command()),
                "LABKIT_HUB_LIMITS": json.dumps(self.limits.__dict__)}


def settings_from_environ() -> HubSettings:
    """The config file's side of `HubSettings.environ`. All labs."""
    env = os.environ
    missing = [k for k in ("LABKIT_HUB_PASSWORD", "LABKIT_HUB_EXERCISES", "LABKIT_HUB_SHARED_CACHE") if k not in env]
    if missing:
        raise HubError(f"{', '.join(missing)} not set: start the hub with `make hub` (or `python -m labkit hub`), "
                       "which sets them.")
    return HubSettings(int(env.get("LABKIT_HUB_PORT", "8000")), env["LABKIT_HUB_PASSWORD"],
                       env.get("LABKIT_HUB_PROFILE", "cpu"), Path(env["LABKIT_HUB_EXERCISES"]),
                       Path(env["LABKIT_HUB_SHARED_CACHE"]), Path(env.get("LABKIT_HUB_PYTHON", sys.executable)),
                       int(env["LABKIT_HUB_SEATS"]), Limits(**json.loads(env["LABKIT_HUB_LIMITS"])), Path.cwd(),
                       tuple(int(p) for p in env.get("LABKIT_HUB_INTERNAL_PORTS", "8081,8001").split(",")),
                       Path(env.get("LABKIT_HUB_COURSE", paths.REPO)), env.get("LABKIT_HUB_ADMIN_PASSWORD", ""))


def prepare(port: int = 8000, profile: str = "cpu", state: Path | None = None, exercises: Path | None = None,
            seats: int | None = None, password: str | None = None, lang: str | None = None) -> HubSettings:
    """Every check before JupyterHub starts (root, cgroups, a readable course, capacity, the password), and the
    labs to hand out (in `lang`: es, pt, zh or ko; English by default). All labs."""
    from .course import write_exercises

    if lang:
        from .translations import check_language
        check_language(lang)
    why = cgroups_available()
    if why:
        raise HubError(f"The hub puts each attendee in a cgroup of their own, and cannot here: {why}.")
    state = Path(state or DEFAULT_STATE)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    shared, python, course = paths.cache_dir(), Path(sys.executable), paths.REPO
    private = unreadable_by_others([python.resolve().parent, python.parent, paths.REPO, shared])
    if private:
        print(f"The course is private to its owner ({private[0]}): attendees get a readable copy in {state / 'served'} "
              "(hardlinks).", flush=True)
        python, shared = publish(state / "served", shared)
        course = state / "served" / "course"
    check_attendees_can_run(python, shared, course)
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
        write_exercises(exercises, lang=lang)
    return HubSettings(port, password, profile, Path(exercises), shared, python, seats or fits, limits, hub_state,
                       (_free_port(), _free_port()), course, secrets.token_urlsafe(24))


def _free_port() -> int:
    """A free loopback port for the hub's and the proxy's APIs: two hubs (or a hub and a test) never collide."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop_with_parent() -> None:
    """In JupyterHub's process: a SIGTERM when `labkit hub` dies, however it dies (a closed terminal, SIGKILL), so the
    hub stops the attendees' servers and its proxy instead of running on unseen (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _wait_until_up(hub: subprocess.Popen, url: str, log: Path, timeout_s: float = 120) -> None:
    """Until JupyterHub answers through its proxy: the URL printed is one that works."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}hub/api", timeout=2)
            return
        except OSError:
            if hub.poll() is not None or time.time() > deadline:
                tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
                os.killpg(hub.pid, signal.SIGKILL)        # and its proxy
                raise HubError(f"JupyterHub did not start (its log, {log}, ends):\n{tail}") from None
            time.sleep(0.3)


def serve(settings: HubSettings) -> int:
    """Run JupyterHub until Ctrl+C (or SIGTERM); then stop every attendee's server and remove their cgroups.
    All labs."""
    env = dict(os.environ, **settings.environ())
    log = settings.state / "jupyterhub.log"
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=settings.state, env=env,
                           stdout=log.open("a", encoding="utf-8"), stderr=subprocess.STDOUT, start_new_session=True,
                           preexec_fn=_stop_with_parent)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    url = f"http://127.0.0.1:{settings.port}/"
    _wait_until_up(hub, url, log)
    print(f"The workshop hub: {url} here, http://{socket.getfqdn()}:{settings.port}/ for the room (or this machine's "
          "address); attendees log in with any name of lower-case letters and digits")
    print(f"password: {settings.password}")
    print(f"instructor: log in as `{INSTRUCTOR}` with {settings.admin_password} for the Admin page ({url}hub/admin: "
          "every attendee's server, stop the idle ones)")
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
              + "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]), file=sys.stderr)
        return 1
    print("The hub and every attendee's server are stopped.")
    return 0
