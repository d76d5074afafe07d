"""The GPU runner's path, tested where no GPU exists: the probe, the installer's refusal, make test-gpu,
and the gpu profile's code paths (fake probe results, providers from genai_config)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import env, gpu, images, paths, report, vision_export

sys.path.insert(0, str(paths.REPO / "tools"))
import install  # noqa: E402  (tools/ is not a package)

SMI_QUERY = "NVIDIA H100 80GB HBM3, 81559, 580.95.05\n"
SMI_HEADER = "| NVIDIA-SMI 580.95.05    Driver Version: 580.95.05    CUDA Version: 13.0     |\n"


def fake_nvidia_smi(folder: Path) -> Path:
    """An `nvidia-smi` on PATH that answers like a real one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      "case \"$1\" in --query-gpu*) printf '%s' \"$QUERY\";; *) printf '%s' \"$HEADER\";; esac\n")
    script.chmod(0o755)
    return folder


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


# ------------------------------------------------------------------ the gpu profile's code paths
def genai_folder(tmp_path, provider_options):
    folder = tmp_path / "m"
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text(json.dumps({"model": {"decoder": {"session_options": {
        "provider_options": provider_options}}}}))
    return folder


def test_vision_and_embedding_sessions_follow_the_decoders_provider(tmp_path):
    assert images.session_providers(genai_folder(tmp_path, [{"cuda": {}}])) == ["CUDAExecutionProvider",
                                                                              "CPUExecutionProvider"]
    assert images.session_providers(genai_folder(tmp_path / "cpu", [])) == ["CPUExecutionProvider"]


def test_ask_does_not_run_the_vision_model_a_second_time(monkeypatch):
    monkeypatch.setattr(images, "vision_seconds", lambda *a, **k: pytest.fail("ask() re-ran the vision model"))
    folder = vision_export.export("tiny-vision", "int4", progress=False)
    from labkit import data
    assert images.ask(folder, "What is it?", data.images()[:1], max_new_tokens=2).image_tokens == 1921


def test_report_labels_rows_with_the_labs_execution_provider():
    data = {"01_builder_quantization": {"execution_provider": "cuda", "builds": {"int4": {"size_mb": 1}}},
            "02_vision_export": {"execution_provider": "cuda", "exports": {"fp16": ""}, "qa": {"fp16": {}}},
            "03_olive_awq_lora": {"execution_provider": "cuda", "rtn_vs_awq": [{"model": "m", "method": "rtn-int4"}],
                                  "onnx_eval_perplexity": {"base": 2.0}}}
    assert set(report.variants_table(data)["ep"]) == {"cuda"}
