"""make wheelhouse: the locked wheels of one platform for an offline venue (commands checked here, no network)."""

import sys

import pytest

from labkit import paths

sys.path.insert(0, str(paths.REPO / "tools"))
import install  # noqa: E402
import wheelhouse  # noqa: E402


@pytest.mark.parametrize("python", ["3.11", "3.13"])
@pytest.mark.parametrize("platform, lock, tag", [("linux", "cpu-linux.txt", "manylinux_2_28_x86_64"),
                                                ("macos", "cpu-macos.txt", "macosx_14_0_arm64"),
                                                ("windows", "cpu-windows.txt", "win_amd64")])
def test_each_platform_downloads_its_hashed_lock_as_wheels(platform, lock, tag, python, tmp_path):
    commands = wheelhouse.commands(platform, tmp_path, python=python)
    last = commands[-1]
    assert last[last.index("-r") + 1].endswith(f"py{python}/{lock}")
    assert ["--platform", tag] == last[last.index(tag) - 1:][:2]
    assert {"--require-hashes", "--only-binary", "--no-deps"} <= set(last)
    assert last[last.index("--python-version") + 1] == python
    if platform == "linux":
        torch_apart = (paths.REPO / "requirements" / "locks" / f"py{python}" / "torch-cpu-linux.txt").exists()
        assert len(commands) == (2 if torch_apart else 1)
        if torch_apart:
            assert commands[0][commands[0].index("-r") + 1].endswith("torch-cpu-linux.txt"), "torch's own lock first"


def test_a_quick_wheelhouse_keeps_only_the_named_packages_with_their_hashes():
    text = (paths.REPO / "requirements" / "locks" / "py3.11" / "cpu-macos.txt").read_text()
    subset = wheelhouse.only(text, ["numpy", "packaging"])
    names = [line.split("==")[0] for line in subset.splitlines() if "==" in line and not line.startswith(" ")]
    assert names == ["numpy", "packaging"] and subset.count("--hash=sha256:") >= 2


def test_offline_install_uses_only_the_wheelhouse(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(install.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        install.subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    facts = {"version": "3.11", "system": "Linux", "machine": "x86_64", "bits": 64, "free_threaded": False,
             "macos": "-"}
    monkeypatch.setattr(install, "find_python", lambda python: (["python3.11"], facts))
    (tmp_path / "venv").mkdir()
    install.install("cpu", tmp_path / "venv", "python3.11", wheelhouse=tmp_path / "wh")
    pip_installs = [c for c in calls if "install" in c and "-r" in c]
    assert pip_installs and all(c[c.index("--find-links") + 1] == str(tmp_path / "wh") and "--no-index" in c
                                for c in pip_installs)


def test_a_wheelhouse_for_another_python_is_refused_before_anything(monkeypatch, tmp_path):
    facts = {"version": "3.13", "system": "Linux", "machine": "x86_64", "bits": 64, "free_threaded": False,
             "macos": "-"}
    monkeypatch.setattr(install, "find_python", lambda python: (["python3.13"], facts))
    with pytest.raises(install.InstallError, match=r"Python 3.11, and the venv would be Python 3.13.*"
                                                   r"WHEELHOUSE_PYTHON=3.13"):
        install.install("cpu", tmp_path / "venv", None, wheelhouse=tmp_path / "linux-py3.11")
    assert not (tmp_path / "venv").exists()
