"""labkit.gpu, tested where no GPU exists: the probe against a fake nvidia-smi, fake probe results, the CLI's exit."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import SMI_HEADER, SMI_QUERY, fake_nvidia_smi

from labkit import env, gpu


def test_parse_nvidia_smi():
    assert gpu.parse_nvidia_smi(SMI_QUERY, SMI_HEADER) == {
        "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "580.95.05", "cuda_version": "13.0"}


def test_probe_reads_a_real_nvidia_smi_binary(tmp_path, monkeypatch):
    bin_dir = fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("QUERY", SMI_QUERY)
    monkeypatch.setenv("HEADER", SMI_HEADER)
    assert gpu.nvidia_smi()["cuda_version"] == "13.0"


def test_no_gpu_here_is_a_clear_probe_result():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi; tests/test_cuda.py covers it")
    found = gpu.probe()
    assert not found.ok and "nvidia-smi" in found.problem
    assert found.summary().startswith("no usable GPU")


def test_cuda_in_the_provider_list_is_not_enough(monkeypatch):
    """The CPU package asked for CUDA silently falls back to the CPU: the probe must notice."""
    import onnxruntime as ort

    monkeypatch.setattr(gpu, "nvidia_smi", lambda: gpu.parse_nvidia_smi(SMI_QUERY, SMI_HEADER))
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA build of onnxruntime is installed")
    assert "no CUDAExecutionProvider" in gpu.probe().problem
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    found = gpu.probe()
    assert not found.ok and "fell back to the CPU" in found.problem, found.problem
    assert found.name == "NVIDIA H100 80GB HBM3" and found.driver == "580.95.05"


def test_a_working_gpu_is_reported_and_recorded(monkeypatch):
    monkeypatch.setattr(gpu, "nvidia_smi", lambda: gpu.parse_nvidia_smi(SMI_QUERY, SMI_HEADER))
    monkeypatch.setattr(gpu, "run_cuda_session", lambda: None)
    found = gpu.probe()
    assert found.ok and "H100" in found.summary() and "CUDAExecutionProvider" in found.summary()
    assert json.loads(json.dumps(found.as_dict()))["cuda_version"] == "13.0"
    monkeypatch.setattr(env, "probe_gpu", lambda: found)
    rows = {r["check"]: r for r in env.checks("gpu", check_network=False)}
    assert rows["GPU (CUDA)"]["status"] == "ok" and "H100" in rows["GPU (CUDA)"]["value"]


def test_gpu_profile_without_a_gpu_fails_lab00_with_the_fix(monkeypatch):
    monkeypatch.setattr(env, "probe_gpu", lambda: gpu.GpuProbe(ok=False, problem="no NVIDIA GPU or driver"))
    row = {r["check"]: r for r in env.checks("gpu", check_network=False)}["GPU (CUDA)"]
    assert row["status"] == "FAIL" and "make test-gpu" in row["fix"]


def test_gpu_probe_command_exits_3_with_one_line():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    run = subprocess.run([sys.executable, "-m", "labkit", "gpu-probe"], capture_output=True, text=True)
    assert run.returncode == gpu.NO_GPU_EXIT and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: no usable GPU") and len(run.stderr.strip().splitlines()) == 1
