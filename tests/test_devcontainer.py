"""A machine in the browser for attendees whose laptop cannot (.devcontainer/: VS Code Dev Containers, Codespaces)."""

import json
import re
import subprocess
import sys
from pathlib import Path

from labkit import paths

CONFIG = paths.REPO / ".devcontainer" / "devcontainer.json"
SCHEMA = paths.REPO / "tests" / "schemas" / "devContainer.base.schema.json"
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]   # the venv's bin/ or Scripts/, either OS


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CHECK_JSONSCHEMA, "--schemafile", str(SCHEMA), str(path)], capture_output=True,
                          text=True)


def test_devcontainer_matches_the_dev_container_schema_which_catches_a_typo(tmp_path):
    run = validate(CONFIG)
    assert run.returncode == 0, run.stdout + run.stderr
    broken = tmp_path / "devcontainer.json"
    broken.write_text(CONFIG.read_text().replace("postCreateCommand", "postCreateComand"))
    assert validate(broken).returncode != 0


def test_devcontainer_installs_with_the_readmes_command_and_opens_the_course_kernel():
    config = json.loads(CONFIG.read_text())
    assert config["postCreateCommand"] == "make install"
    readme = (paths.REPO / "README.md").read_text()
    assert "make install" in readme and ".devcontainer" in readme
    # Python 3.11 in the image: Linux's locks then install PyTorch's CPU wheel, not PyPI's CUDA build.
    python = re.search(r"python:\d+-(3\.\d+)-", config["image"]).group(1)
    assert (paths.REPO / "requirements" / "locks" / f"py{python}" / "torch-cpu-linux.txt").exists()
    vscode = config["customizations"]["vscode"]
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(vscode["extensions"])
    assert vscode["settings"]["python.defaultInterpreterPath"] == "${containerWorkspaceFolder}/.venv/bin/python"
    assert "8888" in config["portsAttributes"], "make lab's JupyterLab port"


def test_the_smallest_codespace_it_asks_for_holds_the_cpu_course():
    """hostRequirements from the cpu course's measured peak (docs/measured/cpu-course.json) and the venv."""
    config = json.loads(CONFIG.read_text())
    sheet = json.loads((paths.REPO / "docs" / "measured" / "cpu-course.json").read_text())
    peak = max(lab["peak_rss_bytes"] for lab in sheet["labs"].values())
    memory = int(config["hostRequirements"]["memory"].removesuffix("gb")) * 1e9
    assert peak + 2e9 <= memory, "the course's peak plus the editor and the OS"
