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
def test_installer_picks_the_lock_per_platform():
    names = lambda flavour, system: [p.name for p in install.locks_for(flavour, system)]  # noqa: E731
    assert names("cpu", "Linux") == ["torch-cpu-linux.txt", "cpu-linux.txt"]
    assert names("cpu", "Darwin") == ["cpu-macos.txt"] and names("cpu", "Windows") == ["cpu-windows.txt"]
    assert names("gpu", "Linux") == ["gpu-linux.txt"]
    with pytest.raises(install.InstallError, match="DirectML"):
        install.locks_for("gpu", "Windows")
    for lock in ("cpu", "gpu"):
        assert all(p.exists() for p in install.locks_for(lock, "Linux"))


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
