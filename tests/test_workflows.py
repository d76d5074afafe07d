"""The CI workflow files: valid against GitHub's workflow schema, and running what the README says."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labkit import paths

WORKFLOWS = sorted((paths.REPO / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def load(name):
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    workflow = yaml.safe_load((paths.REPO / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(workflow):
    run = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(workflow)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_schema_check_catches_a_typo(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("timeout-minutes:", "timeout-minutez:"))
    run = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(broken)],
                         capture_output=True, text=True)
    assert run.returncode != 0


def steps(job):
    return " ".join(step.get("run", "") + step.get("uses", "") for step in job["steps"])


def test_cpu_workflow_runs_make_test_on_python_311_and_uploads_notebooks():
    job = load("ci.yml")["jobs"]["test"]
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] <= 90
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11" and setup["with"]["cache"] == "pip"
    assert "make test" in steps(job) and "actions/upload-artifact" in steps(job)
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "report.html" in upload["with"]["path"]


def test_gpu_workflow_is_self_hosted_labelled_nightly_and_bounded():
    workflow = load("gpu.yml")
    job = workflow["jobs"]["test-gpu"]
    assert job["runs-on"] == ["self-hosted", "linux", "gpu"] and job["timeout-minutes"] <= 240
    assert workflow["on"]["schedule"] and "labeled" in workflow["on"]["pull_request"]["types"]
    assert "contains(github.event.pull_request.labels.*.name, 'gpu')" in job["if"]
    assert "make test-gpu" in steps(job) and "MODELS=" in steps(job)
    assert "actions/upload-artifact" in steps(job)
