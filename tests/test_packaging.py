"""One input, hashed locks per flavour and platform, and everything that installs agrees with them."""

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from labkit import env, paths

sys.path.insert(0, str(paths.REPO / "tools"))
import install  # noqa: E402  (tools/ is not a package)
import lock  # noqa: E402

LOCKS = paths.REPO / "requirements" / "locks"
PYTHON = ".".join(map(str, sys.version_info[:2]))   # this venv's: its locks are what is installed here
ALL_LOCKS = [(python, path.stem) for python in lock.PYTHONS for path in sorted((LOCKS / f"py{python}").glob("*.txt"))]


def norm(name: str) -> str:
    """PEP 503 name: huggingface_hub and huggingface-hub are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(package: str, flavour: str = "cpu") -> str:
    """The version requirements/requirements.in pins `package` at, for one flavour."""
    for requirement in lock.flavour_requirements(flavour):
        name, _, version = re.sub(r"\[.*\]", "", requirement).partition("==")
        if norm(name) == norm(package):
            return version
    raise AssertionError(f"requirements.in pins no {package} for the {flavour} flavour")


def lock_versions(name: str, python: str = "3.11") -> dict[str, str]:
    """{package: version} of one lock file; fails on any line that is not an exact, hashed pin."""
    text = (LOCKS / f"py{python}" / f"{name}.txt").read_text()
    pins = dict(re.findall(r"(?m)^([A-Za-z0-9_.\-]+)==(\S+) \\$", text))
    requirement_lines = re.findall(r"(?m)^[A-Za-z0-9]\S*", text)
    assert len(requirement_lines) == len(pins), f"{name}: a line is not an exact pin with hashes"
    blocks = re.split(r"(?m)^(?=[A-Za-z0-9])", text)[1:]
    assert all("--hash=sha256:" in block for block in blocks), f"{name}: a pin without a hash"
    return {norm(k): v for k, v in pins.items()}


def test_every_supported_python_has_its_locks():
    assert [python for python, name in ALL_LOCKS if name == "cpu-linux"] == list(lock.PYTHONS) == ["3.11", "3.12",
                                                                                                     "3.13"]
    for python in lock.PYTHONS:
        names = {name for p, name in ALL_LOCKS if p == python}
        assert {"cpu-linux", "cpu-macos", "cpu-windows"} <= names
        assert ("gpu-linux" in names) == (python in lock.GPU_PYTHONS)
        header = (LOCKS / f"py{python}" / "cpu-linux.txt").read_text().splitlines()
        assert any(f"Python {python}," in line for line in header[:4]), "each lock says which Python it is for"


@pytest.mark.parametrize("python, name", ALL_LOCKS)
def test_every_lock_is_exact_and_hashed_and_has_the_input_pins(python, name):
    versions = lock_versions(name, python)
    text = (LOCKS / f"py{python}" / f"{name}.txt").read_text()
    if name == "torch-cpu-linux":
        assert versions == {"torch": f"{pinned('torch')}+cpu"}
        assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
        return
    if name == lock.HUB:   # the workshop server's JupyterHub, on the course's pins wherever the two share a package
        hub_in = [r for r in lock.HUB_INPUT.read_text().splitlines() if r and not r.startswith("#")]
        for requirement in hub_in:
            package, _, version = requirement.partition("==")
            assert versions[norm(package)] == version
        course = lock_versions("cpu-linux", python)
        assert {p: v for p, v in versions.items() if p in course} == {p: v for p, v in course.items() if p in versions}
        assert "onnxruntime" not in versions and "torch" not in versions
        return
    flavour = name.split("-")[0]
    torch_apart = (LOCKS / f"py{python}" / "torch-cpu-linux.txt").exists()
    for requirement in lock.flavour_requirements(flavour):
        package, _, version = re.sub(r"\[.*\]", "", requirement).partition("==")
        package = norm(package)
        if name == "cpu-linux" and package == "torch":
            if torch_apart:
                assert "torch" not in versions, "Linux CPU torch comes from torch-cpu-linux.txt"
            else:   # PyPI's CUDA build: the lock says so, and tools/install.py warns before installing it
                assert text.startswith(lock.PYPI_TORCH_NOTE) and versions["torch"] == version
            continue
        assert package in versions, f"{name} lacks {package}"
        assert not version or versions[package] == version, f"{name}: {package}=={versions[package]} != {version}"


def test_the_flavours_never_mix_cpu_and_gpu_onnxruntime():
    cpu, gpu = lock_versions("cpu-linux"), lock_versions("gpu-linux")
    for python in lock.PYTHONS:
        for name in ("cpu-linux", "cpu-macos", "cpu-windows"):
            names = set(lock_versions(name, python))
            assert {"onnxruntime", "onnxruntime-genai"} <= names and not {"onnxruntime-gpu",
                                                                          "onnxruntime-genai-cuda"} & names
    cpu_names, gpu_names = {"onnxruntime", "onnxruntime-genai"}, {"onnxruntime-gpu", "onnxruntime-genai-cuda"}
    assert cpu_names <= set(cpu) and not gpu_names & set(cpu)
    assert gpu_names <= set(gpu) and not cpu_names & set(gpu)
    # onnxruntime-genai-cuda 0.12.2 links CUDA 12; the CUDA 12 runtime it needs is in the GPU lock.
    assert {"nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= set(gpu)
    assert gpu["onnxruntime-gpu"] == pinned("onnxruntime-gpu", "gpu"), "the input's CUDA 12 build (requirements.in)"
    assert not any(p.startswith("nvidia-") and p != "nvidia-ml-py" for p in cpu), "no CUDA wheels in the CPU lock"


def test_gpu_flavour_swaps_only_the_onnxruntime_lines():
    cpu, gpu = lock.flavour_requirements("cpu"), lock.flavour_requirements("gpu")
    changed = {(norm(a.split("==")[0]), norm(re.sub(r"\[.*\]", "", b).split("==")[0]))
               for a, b in zip(cpu, gpu) if a != b}
    assert changed == {("onnxruntime", "onnxruntime-gpu"), ("onnxruntime-genai", "onnxruntime-genai-cuda")}
    assert pinned("onnxruntime-genai-cuda", "gpu") == pinned("onnxruntime-genai"), "one genai release for both"


# Runs in the peer engines' own environments (make bench-peers), pinned in requirements/peers/, not in the locks.
PEER_WORKER = paths.REPO / "labkit" / "measuring" / "peer_worker.py"


def third_party_imports(sources=None) -> set[str]:
    names = set()
    for source in sources or [p for p in (paths.REPO / "labkit").rglob("*.py") if p != PEER_WORKER]:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("labkit", "__future__")}


def test_every_labkit_import_is_a_direct_requirement_in_every_lock():
    distributions = importlib.metadata.packages_distributions()
    direct = {norm(re.split(r"[=\[]", r)[0]) for r in lock.flavour_requirements("cpu")}
    gpu_names = {"onnxruntime": "onnxruntime-gpu", "onnxruntime-genai": "onnxruntime-genai-cuda"}
    for module in sorted(third_party_imports()):
        dists = {norm(d) for d in distributions.get(module, [])}
        assert dists, f"labkit imports {module}, which no installed package provides"
        assert dists & direct, f"labkit imports {module} ({dists}): add it to requirements/requirements.in"
        for python, name in ALL_LOCKS:
            if name in ("torch-cpu-linux", lock.HUB):
                continue
            versions = lock_versions(name, python)
            if name == "cpu-linux" and (LOCKS / f"py{python}" / "torch-cpu-linux.txt").exists():
                versions |= lock_versions("torch-cpu-linux", python)
            assert any(gpu_names.get(d, d) in versions or d in versions for d in dists), \
                f"{module} not in py{python}/{name}"


def test_the_peer_worker_imports_only_what_the_peer_pins_install():
    pins = {engine: (paths.REPO / "requirements" / "peers" / f"{engine}.txt").read_text()
            for engine in ("llamacpp", "openvino")}
    provided_by = {"llama_cpp": ("llamacpp", "llama-cpp-python=="),
                   "openvino_genai": ("openvino", "openvino-genai=="),
                   "openvino": ("openvino", "optimum-intel[openvino]=="),
                   "numpy": ("openvino", "optimum-intel"),            # numpy comes with optimum-intel
                   "nncf": ("openvino", "nncf=="),
                   "onnxruntime_genai": (None, None),                 # the course's own environment
                   "onnxruntime": (None, None), "onnx": (None, None)}
    imports = third_party_imports([PEER_WORKER])
    assert imports == set(provided_by), "a new import in the peer worker: pin it in requirements/peers/"
    for module, (engine, pin) in provided_by.items():
        if engine:
            assert pin in pins[engine], f"{module}: {pin} missing from requirements/peers/{engine}.txt"
    # llama.cpp's converter reads the bench model's SentencePiece tokenizer.model with it
    assert "sentencepiece==" in pins["llamacpp"]


def test_environment_yml_installs_the_linux_lock():
    text = (paths.REPO / "environment.yml").read_text()
    assert re.search(r"python=3\.11", text)
    assert re.findall(r"-r (requirements/locks/\S+)", text) == ["requirements/locks/py3.11/torch-cpu-linux.txt",
                                                                "requirements/locks/py3.11/cpu-linux.txt"]


def test_pyproject_reads_dependencies_from_the_input():
    project = tomllib.loads((paths.REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements/requirements.in"]


def test_installed_packages_match_this_machines_lock():
    """Every package of the lock is installed at its locked version (the venv is the lock)."""
    if Path(sys.prefix).name == ".venv-gpu":
        wanted = lock_versions("gpu-linux", PYTHON)
    else:
        names = [p.stem for p in install.locks_for("cpu", "Linux", PYTHON)]
        wanted = {k: v for name in names for k, v in lock_versions(name, PYTHON).items()}
    wrong = {p: (v, env._version(p)) for p, v in wanted.items() if env._version(p) != v}
    assert not wrong, f"installed != lock (run `make install`): {wrong}"


@pytest.mark.parametrize("package", sorted(env.lock_pins()))
def test_lab00_checks_every_pinned_package(package):
    assert env.installed_version(package) == env.lock_pins()[package], "run `make install`"


@pytest.mark.parametrize("target", ["install", "test-gpu"])
def test_make_without_python_311_names_the_fix(target):
    run = subprocess.run(["make", target, "PYTHON=python3.99-missing"], cwd=paths.REPO, capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert "python3.99-missing was not found" in run.stdout and "uv python install 3.12" in run.stdout
