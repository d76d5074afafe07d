"""The pinned stack lives in one place, and everything that installs agrees with it."""

import re
import tomllib
import pytest

from labkit import env, paths

REQUIRED = {"torch", "transformers", "olive-ai", "onnxruntime", "onnxruntime-genai", "onnx", "onnxscript", "peft",
            "datasets", "accelerate", "papermill", "nbclient", "jupyterlab", "ipywidgets", "ipykernel",
            "matplotlib", "tqdm", "pytest"}


def environment_yml_pins() -> dict[str, str]:
    pins, in_pip = {}, False
    for line in (paths.REPO / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            in_pip = True
            continue
        if in_pip and stripped.startswith("- ") and "==" in stripped:
            name, version = stripped[2:].split("#")[0].strip().split("==")
            pins[name.lower()] = version
    return pins


def test_lock_pins_every_required_package_exactly():
    pins = env.lock_pins()
    assert REQUIRED <= set(pins), f"missing from lock.txt: {REQUIRED - set(pins)}"
    assert pins["torch"] == "2.13.0", "torch must stay on the on-disk CPU wheel"
    for line in (paths.REPO / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9_.+]*", line), f"not an exact pin: {line}"


def test_environment_yml_installs_the_same_pins():
    assert environment_yml_pins() == env.lock_pins()
    text = (paths.REPO / "environment.yml").read_text()
    assert re.search(r"python=3\.11", text)


def test_pyproject_reads_dependencies_from_the_lock():
    project = tomllib.loads((paths.REPO / "pyproject.toml").read_text())
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements/lock.txt"]
    assert dynamic["optional-dependencies"]["gpu"]["file"] == ["requirements/gpu.txt"]
    gpu = (paths.REPO / "requirements" / "gpu.txt").read_text()
    assert "onnxruntime-genai-cuda==" + env.lock_pins()["onnxruntime-genai"] in gpu


@pytest.mark.parametrize("package", sorted(env.lock_pins()))
def test_installed_version_matches_the_lock(package):
    assert env.installed_version(package) == env.lock_pins()[package], "run `make install`"
