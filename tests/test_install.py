"""tools/install.py and make test-gpu on a machine without a GPU: clear refusals, nothing half-installed."""

import os
import shutil
import subprocess
import sys

import pytest

from labkit import paths

sys.path.insert(0, str(paths.REPO / "tools"))
import install  # noqa: E402  (tools/ is not a package)
from helpers import SMI_HEADER, SMI_QUERY, fake_nvidia_smi


# ------------------------------------------------------------------ the installer and make test-gpu
def test_installer_picks_the_lock_per_platform_and_python():
    def names(flavour, system, python="3.11"):
        return [str(p.relative_to(install.LOCKS)) for p in install.locks_for(flavour, system, python)]
    assert names("cpu", "Linux") == ["py3.11/torch-cpu-linux.txt", "py3.11/cpu-linux.txt", "py3.11/hub-linux.txt"]
    assert names("cpu", "Darwin") == ["py3.11/cpu-macos.txt"] and names("cpu", "Windows") == ["py3.11/cpu-windows.txt"]
    assert names("gpu", "Linux") == ["py3.11/gpu-linux.txt"]
    assert names("cpu", "Darwin", "3.13") == ["py3.13/cpu-macos.txt"]
    assert names("cpu", "Windows", "3.12") == ["py3.12/cpu-windows.txt"]
    assert names("cpu", "Linux", "3.13")[-2:] == ["py3.13/cpu-linux.txt", "py3.13/hub-linux.txt"]
    with pytest.raises(install.InstallError, match="DirectML"):
        install.locks_for("gpu", "Windows")
    with pytest.raises(install.InstallError, match="Python 3.11 only"):
        install.locks_for("gpu", "Linux", "3.13")
    with pytest.raises(install.InstallError, match="No locks for Python 3.14"):
        install.locks_for("cpu", "Linux", "3.14")
    assert install.supported_pythons() == ["3.11", "3.12", "3.13"]
    for python in install.supported_pythons():
        assert all(p.exists() for p in install.locks_for("cpu", "Linux", python))


# The fake interpreters below are shell scripts: POSIX only (the Windows CI job runs the real installer instead).
shell_scripts = pytest.mark.skipif(os.name == "nt", reason="fakes an interpreter with a shell script")


def fake_python(folder, name, version="3.13", system="Linux", machine="x86_64", bits=64, free_threaded=0,
                macos="-"):
    """An executable that answers install.py's probe like an interpreter of that kind (and does nothing else)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    major, minor = version.split(".")
    path.write_text(f"#!/bin/sh\necho {major} {minor} {system} {machine} {bits} {free_threaded} {macos}\n")
    path.chmod(0o755)
    return path


@shell_scripts
def test_an_attendee_with_only_python313_gets_it_without_naming_it(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3.13")
    monkeypatch.setenv("PATH", str(bin_dir))
    python, facts = install.find_python(None)
    assert python == [str(bin_dir / "python3.13")] and facts["version"] == "3.13"
    # 3.11 on the PATH too: preferred (the GPU runner's, and Linux's CPU torch wheel)
    fake_python(bin_dir, "python3.11", version="3.11")
    assert install.find_python(None)[0] == [str(bin_dir / "python3.11")]


@shell_scripts
def test_make_runs_the_installer_with_whatever_python_there_is(tmp_path):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3.13")
    for tool in ("make", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    # Not the make (or its PYTHON=) this suite may run under: MAKEFLAGS would hand that down.
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON")
    run = subprocess.run(["make", "-n", "install"], cwd=paths.REPO, capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k not in outer}, "PATH": str(bin_dir)})
    assert run.returncode == 0, run.stderr
    assert f"{bin_dir / 'python3.13'} tools/install.py --flavour cpu --venv .venv" in run.stdout
    assert "--python" not in run.stdout, "no PYTHON given: install.py picks the course's Python itself"


@shell_scripts
@pytest.mark.parametrize("facts, says", [
    ({"machine": "aarch64"}, "Linux on aarch64: onnxruntime-genai 0.12.2 publishes Linux wheels for x86_64 only"),
    ({"system": "Darwin", "machine": "x86_64", "macos": "14.5"}, "an Intel Mac"),
    ({"system": "Darwin", "machine": "arm64", "macos": "13.6"}, "macOS 13.6: onnxruntime 1.32's macOS wheels need"),
    ({"system": "Windows", "machine": "x86", "bits": 32}, "this Python is 32-bit"),
    ({"system": "Windows", "machine": "arm64"}, "Windows on arm64: torch 2.13 publishes Windows wheels for x64 only"),
    ({"free_threaded": 1}, "free-threaded Python (3.13t)"),
    ({"version": "3.10"}, "onnxruntime 1.32.0 publishes no wheels for Python 3.10"),
    ({"version": "3.14"}, "made and tested for Python 3.11, 3.12, 3.13, not 3.14"),
])
def test_unsupported_pythons_and_platforms_are_refused_before_any_download(tmp_path, facts, says):
    python = fake_python(tmp_path / "bin", "python3", **facts)
    venv = tmp_path / "venv"
    run = subprocess.run([sys.executable, str(paths.REPO / "tools" / "install.py"), "--venv", str(venv),
                          "--python", str(python)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert says in run.stderr and "Nothing was downloaded" in run.stderr
    assert not venv.exists()


@shell_scripts
def test_nothing_suitable_names_every_python_it_saw(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3.12", machine="aarch64")
    fake_python(bin_dir, "python3", version="3.10")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(install.sys, "executable", str(bin_dir / "python3"))
    with pytest.raises(install.InstallError) as error:
        install.find_python(None)
    text = str(error.value)
    assert "python3.12 cannot hold the course: Linux on aarch64" in text and "Python 3.10" in text
    assert "Nothing was installed" in text


def test_a_venv_keeps_its_python_unless_removed(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.12.1\n")
    assert install.venv_version(venv) == "3.12"


def test_gpu_install_refuses_without_nvidia_smi_before_creating_anything(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    venv = tmp_path / "venv-gpu"
    run = subprocess.run([sys.executable, str(paths.REPO / "tools" / "install.py"), "--flavour", "gpu",
                          "--venv", str(venv)], capture_output=True, text=True)
    assert run.returncode == install.NO_GPU and "Traceback" not in run.stderr
    assert "`nvidia-smi` was not found" in run.stderr and "Nothing was installed" in run.stderr
    assert not venv.exists()


def test_gpu_install_with_a_driver_gets_past_the_check(tmp_path, monkeypatch):
    bin_dir = fake_nvidia_smi(tmp_path / "bin")
    env_ = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", QUERY=SMI_QUERY, HEADER=SMI_HEADER)
    run = subprocess.run([sys.executable, str(paths.REPO / "tools" / "install.py"), "--check-gpu"],
                         capture_output=True, text=True, env=env_)
    assert run.returncode == 0 and "NVIDIA H100 80GB HBM3" in run.stdout


def test_make_test_gpu_stops_clearly_and_keeps_the_cpu_venv():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    run = subprocess.run(["make", "-s", "test-gpu"], cwd=paths.REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable))
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out and "nvidia-smi" in out
    assert " passed" not in out, "no test may run, let alone pass, without a GPU"
    assert not (paths.REPO / ".venv-gpu").exists()
    check = subprocess.run([sys.executable, "-c", "import onnxruntime, onnxruntime_genai"], capture_output=True)
    assert check.returncode == 0, "the CPU environment still has ONNX Runtime"
