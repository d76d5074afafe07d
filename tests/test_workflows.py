"""The CI workflow files: valid against GitHub's workflow schema, and running what the README says."""

import subprocess
import sys

import pytest
import yaml

from labkit import paths

WORKFLOWS = sorted((paths.REPO / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]   # the venv's bin/ or Scripts/, either OS


def load(name):
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    workflow = yaml.safe_load((paths.REPO / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(workflow):
    run = subprocess.run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(workflow)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_schema_check_catches_a_typo(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("timeout-minutes:", "timeout-minutez:"))
    run = subprocess.run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(broken)],
                         capture_output=True, text=True)
    assert run.returncode != 0


def steps(job):
    return " ".join(step.get("run", "") + step.get("uses", "") for step in job["steps"])


def readme_commands() -> str:
    """The README's fenced shell blocks: the commands it tells people to run."""
    import re
    return "\n".join(re.findall(r"```(?:bash|sh)?\n(.*?)```", (paths.REPO / "README.md").read_text(), re.S))


def test_cpu_workflow_runs_what_the_readme_says_on_the_projects_python_and_keeps_the_notebooks():
    import tomllib

    job = load("ci.yml")["jobs"]["test"]
    assert "make test" in readme_commands() and "make test PYTHON=" in steps(job), "CI runs the README's command"
    requires = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    version = setup["with"]["python-version"]
    assert f">={version}" in requires, f"CI's Python {version} is the one pyproject.toml requires ({requires})"
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()", "the executed notebooks come back from a failed run too"
    assert job["env"]["LABKIT_RUNS"].endswith("/runs") and "runs/**/*.ipynb" in upload["with"]["path"]


def test_gpu_workflow_runs_make_test_gpu_only_on_a_gpu_runner():
    workflow = load("gpu.yml")
    job = workflow["jobs"]["test-gpu"]
    assert "make test-gpu" in readme_commands() and "make test-gpu" in steps(job)
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"], "GitHub's hosted runners have no GPU"
    assert "contains(github.event.pull_request.labels.*.name, 'gpu')" in job["if"], "opt-in on pull requests"


def test_ci_matrix_covers_the_attendees_platforms_from_their_locks():
    import tomllib

    jobs = load("ci.yml")["jobs"]
    full = next(s for s in jobs["test"]["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    platforms = jobs["platforms"]
    assert platforms["strategy"]["fail-fast"] is False, "one platform failing must not cancel the others"
    cells = {(c["os"], c["python"]) for c in platforms["strategy"]["matrix"]["include"]}
    linux = {python for os_, python in cells if os_.startswith("ubuntu")} | {full["with"]["python-version"]}
    assert linux == {"3.11", "3.12", "3.13"}, "Linux runs every supported Python"
    assert any(os_ == "macos-14" for os_, _ in cells) and any(os_.startswith("windows") for os_, _ in cells)
    for _, python in cells:
        assert (paths.REPO / "requirements" / "locks" / f"py{python}" / "cpu-linux.txt").exists()
    text = steps(platforms)
    assert "python tools/install.py" in text and "labkit course --only 00 01" in text and "make " not in text
    # The unit-test selection names only markers pyproject.toml declares (a typo would select everything).
    selection = next(s["run"] for s in platforms["steps"] if "pytest" in s.get("run", ""))
    declared = {m.split(":")[0] for m in tomllib.loads((paths.REPO / "pyproject.toml").read_text())["tool"]["pytest"]
                ["ini_options"]["markers"]}
    import re
    assert set(re.findall(r"not (\w+)", selection)) == declared
    upload = next(s for s in platforms["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "matrix.os" in upload["with"]["name"]
    assert platforms["steps"][1]["with"]["cache-dependency-path"] == "requirements/locks/py${{ matrix.python }}/*.txt"
