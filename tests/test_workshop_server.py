"""The workshop server (`make hub`): JupyterHub serving the course to a room, each attendee their own Unix user.

The unit tests check the pieces (names, limits, capacity, cgroups, who may read what). The browser test starts
`python -m labkit hub` as `make hub` does, logs three attendees in at once in Chromium, and each runs lab 00 and
gets an answer from lab 04's chat panel, on the session course's model from the shared cache. `-m hub` runs it alone.
Needs root and cgroups (the hub creates Unix users and puts each server in a cgroup), as `.ci/run` has.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import CGROUPS_WRITABLE
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from parameters import TEST_PARAMETERS

from labkit import course, paths
from labkit.core import sizing
from labkit.workshop import attendees, server

ROOT_WITH_CGROUPS = pytest.mark.skipif(not CGROUPS_WRITABLE or attendees.cgroups_available() is not None,
                                       reason="the hub creates Unix users and cgroups: run as root on Linux")


# ------------------------------------------------------------------ the pieces
def test_attendee_names_become_prefixed_unix_users_and_nothing_else():
    assert attendees.unix_name("ada") == "phi-ada" and attendees.unix_name("team7") == "phi-team7"
    for bad in ("root", "Ada", "ada-admin", "../etc", "", "7up", "a" * 21):
        if bad == "root":      # a valid name, and never the server's root: always prefixed
            assert attendees.unix_name(bad) == "phi-root"
            continue
        with pytest.raises(attendees.HubError, match="lower-case letters and digits"):
            attendees.unix_name(bad)
    person = attendees.attendee("ada")
    env = person.env(Path("/srv/cache"))
    assert env["LABKIT_CACHE"] == "/home/phi-ada/phi-lab/models" and env["LABKIT_SHARED_CACHE"] == "/srv/cache"
    assert env["LABKIT_RUNS"] == "/home/phi-ada/phi-lab/runs"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"     # attendees share the cores: no thread spins while it waits


def test_limits_come_from_the_measured_course_and_capacity_never_overcommits():
    sheet = json.loads((paths.REPO / "docs" / "measured" / "cpu-course.json").read_text())
    peak = max(row["peak_rss_bytes"] for row in sheet["labs"].values())
    limits = attendees.attendee_limits("cpu")
    assert peak * attendees.HEADROOM <= limits.memory_bytes < peak * attendees.HEADROOM + 0.5 * sizing.GB
    assert limits.cores == sheet["cores"] and "lab 03" in limits.basis
    assert attendees.capacity(limits, 64 * 10**9) == (64 * 10**9 - attendees.RESERVE_BYTES) // limits.memory_bytes
    assert attendees.capacity(limits, limits.memory_bytes) == 0
    line = attendees.capacity_line(limits, 3, 24 * 10**9)
    assert line.startswith("3 attendees at most") and f"{limits.memory_bytes / 1e9:.1f} GB" in line
    with pytest.raises(attendees.InputError, match="No measured course for the 'phone' profile"):
        attendees.attendee_limits("phone")


@pytest.fixture
def open_tmp():
    """A temp folder every user may enter (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="pytest-hub-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_readmes_sizes_are_the_hubs():
    limits, readme = attendees.attendee_limits("cpu"), (paths.REPO / "README.md").read_text()
    assert f"{limits.memory_bytes / 1e9:g} GB and {limits.cores:g} cores per attendee" in readme
    for seats, ram_gb in re.findall(r"\n\| (\d+) \| (\d+) GB of RAM", readme) + \
            re.findall(r"\n\| (\d+) \| (\d+) GB, ", readme):
        assert attendees.capacity(limits, int(ram_gb) * 10**9) >= int(seats), (seats, ram_gb)
    assert re.search(r"\n\| 30 \| 192 GB", readme), "the table the test reads"


def test_folders_others_cannot_enter_are_named(open_tmp):
    tmp_path = open_tmp
    private = tmp_path / "private"
    (private / "course").mkdir(parents=True)
    private.chmod(0o700)
    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o755)
    found = server.unreadable_by_others([private / "course", open_])
    assert len(found) == 1 and found[0].startswith(f"{private} (mode drwx------")


def test_settings_come_from_make_hub():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_HUB_")}
    run = subprocess.run([sys.executable, "-c", "from labkit.workshop import server; server.settings_from_environ()"],
                         env=env, capture_output=True, text=True)
    assert run.returncode and "start the hub with `make hub`" in run.stderr


@ROOT_WITH_CGROUPS
def test_an_attendee_cgroup_enforces_its_memory_limit():
    group = attendees.Cgroup(f"pytest{os.getpid()}")
    limits = attendees.Limits("cpu", 200 * 10**6, 1, "test")
    group.create(limits)
    try:
        assert 0 <= 200 * 10**6 - group.memory_limit() < 4096      # whole pages
        grab = "b = bytearray(600 * 10**6); b[::4096] = b'x' * len(b[::4096]); print('survived')"
        run = subprocess.run([sys.executable, "-c", grab], preexec_fn=group.join, capture_output=True, text=True)
        assert run.returncode == -signal.SIGKILL and "survived" not in run.stdout, "the kernel's OOM killer stops it"
        fits = subprocess.run([sys.executable, "-c", "b = bytearray(20 * 10**6); print('fits')"],
                              preexec_fn=group.join, capture_output=True, text=True)
        assert fits.stdout.strip() == "fits"
    finally:
        group.remove()
    assert not any(folder.exists() for folder in group.folders())


@ROOT_WITH_CGROUPS
def test_a_full_server_refuses_the_next_attendee_with_its_size():
    limits = attendees.Limits("cpu", 6 * 10**9, 2, "test")
    groups = [attendees.Cgroup(f"pytest{os.getpid()}x{i}") for i in range(2)]
    sleepers = []
    try:
        for group in groups:
            group.create(limits)
            sleepers.append(subprocess.Popen(["sleep", "60"], preexec_fn=group.join))
        running = attendees.attendees_running()
        assert {g.unix for g in groups} <= set(running)
        with pytest.raises(attendees.HubError, match=rf"full: {len(running)} attendees are running, and it holds "
                                                  rf"{len(running)} \(6.0 GB each\)"):
            attendees.check_seat("phi-newcomer", len(running), limits)
        attendees.check_seat(groups[0].unix, len(running), limits)     # a restart of one's own server is no new seat
    finally:
        for group in groups:
            group.remove()
        for sleeper in sleepers:
            sleeper.wait()


# ------------------------------------------------------------------ beyond one server: Zero to JupyterHub
KUBERNETES = paths.REPO / "deploy" / "kubernetes"


def merged(defaults: dict, values: dict) -> dict:
    """Helm's merge of a values file over the chart's defaults (maps merge, everything else is replaced)."""
    out = dict(defaults)
    for key, value in values.items():
        both = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        out[key] = merged(defaults[key], value) if both else value
    return out


def test_the_kubernetes_values_pass_the_charts_schema_and_match_the_hub():
    import jsonschema
    import yaml

    schema = json.loads((KUBERNETES / "values.schema.json").read_text())
    defaults = yaml.safe_load((KUBERNETES / "chart-values.yaml").read_text())
    values = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
    jsonschema.validate(merged(defaults, values), schema)
    typo = merged(defaults, {**values, "singleuser": {**values["singleuser"], "memory": {"limitt": "6G"}}})
    with pytest.raises(jsonschema.ValidationError, match="'limitt' was unexpected"):
        jsonschema.validate(typo, schema)
    # the same attendee as the one-server hub: limits, name rule, environment, authenticator
    limits, user = attendees.attendee_limits("cpu"), values["singleuser"]
    assert user["memory"]["limit"] == user["memory"]["guarantee"] == f"{limits.memory_bytes / 1e9:g}G"
    assert user["cpu"]["limit"] == limits.cores
    assert values["hub"]["config"]["Authenticator"]["username_pattern"] == f"^{attendees.NAME_PATTERN}$"
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "shared-password"
    home = Path(user["storage"]["homeMountPath"])
    person = attendees.Attendee("ada", "jovyan", home)
    assert {k: v for k, v in user["extraEnv"].items() if k in person.env(Path("x"))} == \
        person.env(Path(user["extraEnv"]["LABKIT_SHARED_CACHE"]))
    mounts = {m["mountPath"]: m for m in user["storage"]["extraVolumeMounts"]}
    assert mounts[user["extraEnv"]["LABKIT_SHARED_CACHE"]]["readOnly"] is True


# ------------------------------------------------------------------ three attendees in a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ATTENDEES = ("testana", "testben", "testcleo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labs_for_attendees(folder: Path, cache: Path, served_cache: Path, export) -> None:
    """Lab 00 and lab 04 with the suite's parameters, lab 04 on the session course's model and adapters as the
    served cache holds them (the attendee's notebook names paths they can read)."""
    folder.mkdir(parents=True, exist_ok=True)
    model_dir, adapter, _ = (served_cache / Path(p).relative_to(cache) for p in export)
    for notebook in course.notebooks():
        if notebook.stem not in ("00_environment_check", "04_inference"):
            continue
        params = {"profile": "cpu", **TEST_PARAMETERS.get(notebook.stem, {})}
        if notebook.stem == "04_inference":
            params.update(interactive=True, model_dir=str(model_dir), adapter=str(adapter))
        nb = parameterize_notebook(load_notebook_node(str(notebook)), params)
        nbformat.write(nb, folder / notebook.name)
        (folder / notebook.name).chmod(0o644)


class Hub:
    def __init__(self, state: Path, port: int):
        self.state, self.port, self.base = state, port, f"http://127.0.0.1:{port}"
        self.labs = state / "handout"
        self.labs.mkdir(parents=True)
        self.log = state / "labkit-hub.log"
        env = dict(os.environ, LABKIT_HUB_PASSWORD="room-password-42")
        self.process = subprocess.Popen([sys.executable, "-m", "labkit", "hub", "--port", str(port), "--state",
                                         str(state), "--exercises", str(self.labs), "--seats", "3"],
                                        env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + 120
        while "Stop it with Ctrl+C" not in self.log.read_text():
            if self.process.poll() is not None or time.time() > deadline:
                pytest.fail(f"`labkit hub` did not start:\n{self.log.read_text()}")
            time.sleep(0.3)
        self.password = re.search(r"password: (\S+)", self.log.read_text()).group(1)
        served = state / "served"
        self.served_cache = served / "models" if served.exists() else paths.cache_dir()
        self.python = served / "env" / "bin" / "python" if served.exists() else Path(sys.executable)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=90)
        return self.log.read_text()


def log_in(browser, hub, name, password):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{hub.base}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    return page


def wait_for_lab(page, timeout_s=150):
    page.wait_for_url(re.compile(r".*/user/[^/]+/lab.*"), timeout=timeout_s * 1000)
    page.wait_for_selector(".jp-LauncherCard, .jp-NotebookPanel", timeout=timeout_s * 1000)


def open_notebook(page, base, user, name):
    # a workspace of its own, reset: only this notebook open (the other's kernel keeps running on the server)
    page.goto(f"{base}/user/{user}/lab/workspaces/{Path(name).stem}/tree/{name}?reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-Toolbar-kernelName')]"
                           ".some(e => e.innerText.trim() === 'Python (labkit)')", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)


def queue_cells(page, indices):
    """Select each cell by its prompt and run it (Ctrl+Enter), as an attendee steps through to the chat panel."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")
    for index in indices:
        cells.nth(index).locator(".jp-InputPrompt").click()
        page.keyboard.press("Control+Enter")


def wait_idle_after(page, selector_text, timeout_s, shot: Path):
    """Until every queued cell has run; fail on a traceback, with a screenshot."""
    deadline = time.time() + timeout_s
    while True:
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        outputs = str(panel.locator(".jp-OutputArea").all_inner_texts())
        prompts = panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if "Traceback (most recent call last)" in outputs or time.time() > deadline:
            page.screenshot(path=str(shot))
            pytest.fail(f"cells did not finish in {timeout_s} s or raised (screenshot {shot}); prompts {prompts}, "
                        f"outputs {outputs[-3000:]}")
        if not any("*" in p for p in prompts) and selector_text(page):
            return
        time.sleep(1)


def cell_index(nb, starts):
    return next(i for i, cell in enumerate(nb.cells) if cell.source.lstrip().startswith(starts))


def processes_in(unix):
    uid = pwd.getpwnam(unix).pw_uid
    found = {}
    for pid in attendees.Cgroup(unix).pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        found[pid] = (int(re.search(r"Uid:\s+(\d+)", status).group(1)), cmd)
    return uid, found


def as_user(unix, *command):
    return subprocess.run(["runuser", "-u", unix, "--", *command], capture_output=True, text=True)


@pytest.mark.hub
@pytest.mark.browser
@ROOT_WITH_CGROUPS
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: `apt-get install chromium` (.ci/run installs it)")
@pytest.mark.skipif(shutil.which("npm") is None, reason="JupyterHub's proxy comes from npm (Node.js 20)")
def test_three_attendees_each_get_an_answer_in_their_own_server(open_tmp, travel_export):
    from playwright.sync_api import sync_playwright

    state = open_tmp
    for name in ATTENDEES + ("testdan", server.INSTRUCTOR):
        attendees.remove_attendee(name)
    cache = paths.cache_dir()
    before = {p.name for p in cache.glob("olive/*")}
    hub = Hub(state, free_port())
    shots = paths.runs_root() / f"pytest-hub-{time.strftime('%Y%m%d-%H%M%S')}"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        labs_for_attendees(hub.labs, cache, hub.served_cache, travel_export)
        lab04 = nbformat.read(hub.labs / "04_inference.ipynb", as_version=4)
        # The parameters (and papermill's injected ones), the setup, the bare loop, the adapters, the chat panel.
        tagged = [i for i, cell in enumerate(lab04.cells)
                  if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", []))]
        cells = tagged + [cell_index(lab04, s) for s in ("from pathlib import Path", "import json",
                                                         "brief_adapter = ", "answer_schema = ", "panel_adapters = ")]
        assert len(tagged) == 2 and cells == sorted(cells), cells
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            wrong = log_in(browser, hub, "testana", "not-the-password")
            wrong.wait_for_selector("text=Invalid username or password", timeout=30_000)
            wrong.context.close()
            pages = {name: log_in(browser, hub, name, hub.password) for name in ATTENDEES}   # three spawns at once
            for page in pages.values():
                wait_for_lab(page)
            full = log_in(browser, hub, "testdan", hub.password)     # a fourth: the server holds three
            full.wait_for_selector("text=The workshop server is full", timeout=60_000)
            full.screenshot(path=str(shots / "fourth-refused.png"))
            full.context.close()
            admin_password = re.search(r"as `instructor` with (\S+)", hub.log.read_text()).group(1)
            admin = log_in(browser, hub, server.INSTRUCTOR, admin_password)   # no seat left for a server of its own
            admin.wait_for_selector("text=The workshop server is full", timeout=60_000)
            admin.goto(f"{hub.base}/hub/admin")
            for name in ATTENDEES:
                admin.wait_for_selector(f"text={name}", timeout=30_000)
            admin.screenshot(path=str(shots / "admin-page.png"))
            admin.context.close()

            for name, page in pages.items():                         # lab 00, Run All, in each server at once
                open_notebook(page, hub.base, name, "00_environment_check.ipynb")
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            for name, page in pages.items():
                wait_idle_after(page, lambda pg: "this machine is ready for the course" in str(
                    pg.locator(".jp-OutputArea").all_inner_texts()), 180, shots / f"{name}-lab00-failed.png")
                page.screenshot(path=str(shots / f"{name}-lab00.png"))
            for name, page in pages.items():                         # lab 04 down to its chat panel
                open_notebook(page, hub.base, name, "04_inference.ipynb")
                queue_cells(page, cells)
            answers = {}
            for name, page in pages.items():
                wait_idle_after(page, lambda pg: pg.locator("button", has_text="Send").count() > 0, 240,
                                shots / f"{name}-lab04-failed.png")
                panel = page.locator(".widget-vbox").filter(has=page.locator("button", has_text="Send")).last
                panel.scroll_into_view_if_needed()
                before_text = panel.locator(".widget-html").inner_text()
                panel.locator("input[placeholder='Ask a travel question…']").fill("What should I eat in Kyoto?")
                panel.locator("button", has_text="Send").click()
                page.wait_for_function("([el, b]) => el.innerText.includes('tok/s') && el.innerText !== b",
                                       arg=[panel.locator(".widget-html").element_handle(), before_text],
                                       timeout=90_000)
                answers[name] = panel.locator("textarea").input_value()
                page.screenshot(path=str(shots / f"{name}-lab04-answer.png"))
            for answer in answers.values():
                assert answer.startswith("you: What should I eat in Kyoto?\nmodel: ") and len(answer) > 45, answer

            limits = attendees.attendee_limits("cpu")
            for name in ATTENDEES:
                unix = attendees.unix_name(name)
                uid, procs = processes_in(unix)
                assert 0 <= limits.memory_bytes - attendees.Cgroup(unix).memory_limit() < 4096
                servers = [pid for pid, (_, cmd) in procs.items() if "jupyterhub.singleuser" in cmd]
                kernels = [pid for pid, (_, cmd) in procs.items() if "ipykernel_launcher" in cmd]
                assert len(servers) == 1 and len(kernels) == 2, procs     # lab 00's kernel and lab 04's
                assert {u for u, _ in procs.values()} == {uid}, f"{unix}'s processes run as {unix} only: {procs}"
                home = attendees.attendee(name).home
                assert (home.stat().st_mode & 0o777) == 0o700 and home.stat().st_uid == uid
                ran = {p.name for p in (home / "phi-lab" / "runs" / "interactive").iterdir()}
                assert "results.json" in ran, f"{name}'s run outputs are in their own folder"
                own = [p for p in (home / "phi-lab" / "models").rglob("manifest.json")]
                assert not own, f"{name} made models the shared cache holds: {own}"
            ana, ben = (attendees.unix_name(n) for n in ATTENDEES[:2])
            ben_home = attendees.attendee(ATTENDEES[1]).home
            assert as_user(ana, "cat", str(ben_home / "phi-lab" / "04_inference.ipynb")).returncode != 0
            assert as_user(ana, "touch", str(ben_home / "phi-lab" / "from-ana")).returncode != 0
            assert as_user(ana, "ls", str(ben_home)).returncode != 0
            assert as_user(ana, "touch", str(hub.served_cache / "from-ana")).returncode != 0, "the cache is read-only"
            assert {p.name for p in cache.glob("olive/*")} == before, "no attendee wrote into the instructor's cache"
            assert not list(hub.served_cache.rglob(".tmp-*")), "no half-written folder in the shared cache"
            browser.close()
    finally:
        log = hub.stop()
        (shots / "labkit-hub.log").write_text(log)
        for name in ATTENDEES + ("testdan", server.INSTRUCTOR):
            attendees.remove_attendee(name)
    assert "The hub and every attendee's server are stopped." in log, log[-3000:]
    assert hub.process.returncode == 0
    assert attendees.attendees_running() == []
    leftover = subprocess.run(["pgrep", "-f", f"jupyterhub -f {server.CONFIG}"], capture_output=True, text=True)
    assert not leftover.stdout.strip(), "stopping the hub leaves nothing running"
