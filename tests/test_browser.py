"""The course where attendees live: JupyterLab in a real (headless) Chromium, driven with Playwright.

JupyterLab starts as `make lab` starts it (the course's environment, the notebooks folder), on a free
loopback port with a random token. The notebooks are copies with the test parameters injected by
papermill (the committed notebooks stay as they are). Screenshots of every step land in the run
folder's `browser/`. Needs Debian's `chromium` (`.ci/run` installs it); no browser download.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from parameters import LAB04_FEW_QUESTIONS, TEST_PARAMETERS

from labkit import course, paths

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("needs Chromium: `apt-get install chromium` (.ci/run installs it)", allow_module_level=True)

def hub_test_runs() -> bool:
    """The workshop server's browser test runs here (root, cgroups, npm): it covers lab 00's Run All."""
    from conftest import CGROUPS_WRITABLE

    from labkit.workshop import attendees
    return CGROUPS_WRITABLE and attendees.cgroups_available() is None and shutil.which("npm") is not None


RUN = paths.runs_root() / f"pytest-browser-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
SHOTS = RUN / "browser"
KERNEL = "Python (labkit)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(notebook: Path, workspace: Path, **extra) -> None:
    """A copy of `notebook` in `workspace` with the test parameters (and `extra`) injected as papermill does."""
    nb = load_notebook_node(str(notebook))   # what papermill reads: every cell has its tags list
    params = {"profile": "cpu", "run_dir": str(RUN / notebook.stem), **TEST_PARAMETERS.get(notebook.stem, {}), **extra}
    nbformat.write(parameterize_notebook(nb, params), workspace / notebook.name)


@dataclass
class Server:
    base: str
    token: str
    workspace: Path


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """`jupyter lab` from the course environment on copies of the notebooks.

    Session-wide: lab 04's test waits for the session's course (its adapters) and runs last, the others do not."""
    workspace = tmp_path_factory.mktemp("notebooks")
    for notebook in course.notebooks():
        write_notebook(notebook, workspace)
    # Attendee-neutral settings for a test: render every cell (JupyterLab 4 renders only the cells in view,
    # and the test reads every prompt) and no news prompt over the page.
    settings = workspace / ".settings"
    for plugin, values in {"notebook-extension/tracker": '{"windowingMode": "none"}',
                           "apputils-extension/notification": '{"fetchNews": "false"}'}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(values)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, LABKIT_RUNS=str(RUN), HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(workspace / ".jupyter"),
               JUPYTERLAB_SETTINGS_DIR=str(settings))
    log = (RUN / "jupyterlab.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workspace}",
         f"--LabApp.workspaces_dir={workspace / '.workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],   # CI containers
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start; its log: {log}\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield Server(base, token, workspace)
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")   # Playwright's event loop must not outlive this module's tests
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


class Page:
    """One JupyterLab page, with the console errors it logged and numbered screenshots."""

    def __init__(self, browser, base, token, name):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors, self.name, self.shot = [], name, 0
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        # Every message the kernel sends the page (widget updates included), to count how an answer arrives.
        self.frames: list[str] = []
        self.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: self.frames.append(
            payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload)))
        # A workspace of its own, reset: no tab of another test's page is restored next to this one.
        self.page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        self.page.wait_for_function("() => [...document.querySelectorAll('.jp-Toolbar-kernelName')]"
                                    ".some(e => !['', 'No Kernel'].includes(e.innerText.trim()))", timeout=60_000)

    def screenshot(self, step: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.shot += 1
        path = SHOTS / f"{Path(self.name).stem}-{self.shot:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def kernel_name(self) -> str:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName").first.inner_text()

    def run_all(self, timeout_s: int = 240) -> None:
        """Run ▸ Run All Cells, as an attendee clicks it; wait until every code cell has run."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
        deadline = time.time() + timeout_s
        prompts = self.page.locator(".jp-CodeCell .jp-InputPrompt")
        while time.time() < deadline:
            texts = prompts.all_inner_texts()
            if "Traceback (most recent call last)" in self.page.locator(".jp-OutputArea").all_inner_texts().__str__():
                self.screenshot("error")
                pytest.fail(f"{self.name}: a cell raised (screenshot in {SHOTS})")
            if texts and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts):
                return
            time.sleep(1)
        self.screenshot("timeout")
        pytest.fail(f"{self.name}: Run All did not finish in {timeout_s} s: prompts {texts}")

    def check_clean(self) -> None:
        """No widget that failed to render, no JavaScript error; then the page closes."""
        content, errors = self.page.content(), list(self.errors)
        self.page.close()
        assert "Error displaying widget" not in content, "a widget failed to render"
        assert not errors, f"JavaScript errors in the page console: {errors}"


def test_every_notebook_opens_with_the_course_kernel(lab_server, browser):
    for notebook in course.notebooks():
        page = Page(browser, lab_server.base, lab_server.token, notebook.name)
        page.page.wait_for_function(   # the session starts with "No Kernel" until the kernel is up
            "() => [...document.querySelectorAll('.jp-Toolbar-kernelName')]"
            ".some(e => e.innerText.trim().length && e.innerText.trim() !== 'No Kernel')", timeout=60_000)
        assert page.kernel_name().strip() == KERNEL, f"{notebook.name} opened with {page.kernel_name()!r}"
        page.screenshot("opened")
        page.check_clean()


@pytest.mark.skipif(hub_test_runs(), reason="lab 00 runs all in JupyterLab three times in the workshop server's "
                                          "test (tests/test_workshop_server.py), as three attendees")
def test_lab00_runs_all_in_jupyterlab(lab_server, browser):
    page = Page(browser, lab_server.base, lab_server.token, "00_environment_check.ipynb")
    page.run_all(timeout_s=180)
    page.screenshot("ran")
    assert "this machine is ready for the course" in page.page.locator(".jp-OutputArea").all_inner_texts().__str__()
    page.check_clean()


def answer_updates(answer) -> list[str]:
    return answer.evaluate("el => window.__labkitAnswers || []")


def send(page, panel, question: str, step: str) -> tuple[str, list[str], list[str]]:
    """Type, click Send, and record every value the answer box takes while the answer streams in."""
    answer = panel.locator("textarea")
    answer.evaluate("""el => {
        window.__labkitAnswers = [el.value];
        clearInterval(window.__labkitPoll);
        window.__labkitPoll = setInterval(() => {
            const seen = window.__labkitAnswers;
            if (seen[seen.length - 1] !== el.value) seen.push(el.value);
        }, 1);
    }""")
    before = panel.locator(".widget-html").inner_text()
    panel.locator("input[placeholder='Ask a travel question…']").fill(question)
    panel.locator("button", has_text="Send").click()
    page.page.wait_for_function(
        "([el, before]) => el.innerText.includes('tok/s') && el.innerText !== before",
        arg=[panel.locator(".widget-html").element_handle(), before], timeout=60_000)
    page.screenshot(step)
    polled = answer_updates(answer)
    answer.evaluate("() => clearInterval(window.__labkitPoll)")
    # The updates the kernel sent for the answer box: one per streamed piece. The page may apply several
    # in one frame on a fast machine, so the polled values are a lower bound and the messages the count.
    sent = [f for f in page.frames if '"method":"update"' in f.replace(" ", "") and question in f]
    page.frames.clear()
    return answer.input_value(), polled, sent


def test_lab04_chat_panel_streams_and_its_controls_work(lab_server, browser, travel_export):
    # Attendees get the chat panel, not the fixed prompts; on the session course's model and adapters (the brief
    # one is a cache hit): the panel is under test here, so the measured sections ask a handful of questions.
    notebook = next(nb for nb in course.notebooks() if nb.stem == "04_inference")
    write_notebook(notebook, lab_server.workspace, interactive=True, model_dir=str(travel_export[0]),
                   adapter=str(travel_export[1]), **LAB04_FEW_QUESTIONS)
    page = Page(browser, lab_server.base, lab_server.token, notebook.name)
    page.run_all(timeout_s=300)
    page.screenshot("ran")
    panel = page.page.locator(".widget-vbox").filter(has=page.page.locator("button", has_text="Send")).last
    panel.scroll_into_view_if_needed()
    page.screenshot("panel")

    page.frames.clear()
    first, polled, sent = send(page, panel, "What should I eat in Kyoto?", "first-answer")
    assert first.startswith("you: What should I eat in Kyoto?\nmodel: ") and len(first) > 45, first
    assert len(sent) >= 5, f"the answer should arrive in several updates (streaming), the kernel sent {len(sent)}"
    assert len(polled) >= 2 and polled[-1] == first, "the answer box shows the updates as they arrive"

    slider = panel.locator(".widget-slider", has_text="temperature")
    readout = slider.locator(".widget-readout")
    before = readout.inner_text()
    slider.locator(".noUi-handle").focus()
    for _ in range(6):
        slider.locator(".noUi-handle").press("ArrowLeft")
    page.page.wait_for_function("([el, b]) => el.innerText !== b", arg=[readout.element_handle(), before])
    assert float(readout.inner_text()) < float(before)

    panel.locator(".widget-checkbox", has_text="sample").locator("input").check()   # at the lowered temperature
    panel.locator(".widget-dropdown select").select_option(label="brief")
    page.page.wait_for_function("el => el.value === ''", arg=panel.locator("textarea").element_handle())
    page.screenshot("adapter-switched")
    second, _, _ = send(page, panel, "What should I eat in Kyoto?", "second-answer")
    # A 30-step brief adapter may answer in a word ("The"): the panel is under test here, not the answer.
    assert re.match(r"you: What should I eat in Kyoto\?\nmodel: \S", second), second
    assert second != first, "another adapter, sampled, another answer"

    panel.locator(".widget-dropdown select").select_option(label="json")
    page.page.wait_for_function("el => el.value === ''", arg=panel.locator("textarea").element_handle())
    panel.locator(".widget-checkbox", has_text="JSON").locator("input").check()
    third, _, _ = send(page, panel, "Which dish is Lisbon known for?", "json-answer")
    answer = json.loads(third.split("\nmodel: ", 1)[1])        # sampled, and still one object of the schema
    assert set(answer) == {"city", "country", "answer"}, third
    page.check_clean()
