import sys

import pytest

from labkit import env, paths

sys.path.insert(0, str(paths.REPO / "tools"))
import lock  # noqa: E402  (tools/ is not a package)

# The genai pin as requirements/requirements.in states it: the environment check's row for it.
GENAI = next(r for r in lock.flavour_requirements("cpu") if r.startswith("onnxruntime-genai=="))


def test_report_is_a_table_of_checks():
    table = env.report("cpu", check_network=False)
    assert {"status", "value", "fix"} <= set(table.columns)
    assert GENAI in table.index
    assert (table.status != "FAIL").all(), table[table.status == "FAIL"]


def test_a_wrong_version_fails_with_its_fix(monkeypatch, capsys):
    monkeypatch.setattr(env, "_version", lambda package: "0.0.1" if package == "onnxruntime-genai" else None)
    table = env.report("cpu", check_network=False)
    row = table.loc[GENAI]
    assert row.status == "FAIL" and row.value == "0.0.1" and "make install" in row.fix
    assert "fix: Run `make install`" in capsys.readouterr().out


def test_gpu_profile_without_a_gpu_says_what_to_do():
    import shutil
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    row = {r["check"]: r for r in env.checks("gpu", check_network=False)}["GPU (CUDA)"]
    assert row["status"] == "FAIL" and "nvidia-smi" in row["value"] and "make test-gpu" in row["fix"]


def test_lab_00_shows_one_row_for_the_packages_that_match_and_a_row_for_each_mismatch(monkeypatch):
    table = env.report("cpu", check_network=False)
    short = env.compact(table)
    pinned = [check for check in table.index if "==" in check]
    assert GENAI not in short.index and short.loc["packages", "value"] == f"{len(pinned)} of {len(pinned)} at " \
        "the versions of the lock"
    assert len(short) == len(table) - len(pinned) + 1 and list(short.index[:2]) == list(table.index[:2])
    real = env._version
    monkeypatch.setattr(env, "_version", lambda package: "0.0.1" if package == "onnxruntime-genai" else real(package))
    short = env.compact(env.report("cpu", check_network=False))
    assert short.loc[GENAI, "status"] == "FAIL" and short.loc["packages", "value"].startswith(f"{len(pinned) - 1} of")


def test_the_gpu_line_says_whether_the_profile_needs_a_gpu():
    from labkit import gpu
    missing = gpu.GpuProbe(ok=False, problem="no NVIDIA GPU or driver: `nvidia-smi` is missing")
    assert env.gpu_line(missing, "cpu") == ("GPU: none usable here (no NVIDIA GPU or driver); the cpu profile runs "
                                            "on the CPU and needs none.")
    assert env.gpu_line(missing, "gpu").startswith("no usable GPU: no NVIDIA GPU or driver: `nvidia-smi`")
