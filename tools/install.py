"""Create a course environment from the hashed locks: `make install` (CPU) and `make test-gpu` (GPU).

    python tools/install.py                          # .venv, CPU flavour, this platform's lock
    python tools/install.py --flavour gpu --venv .venv-gpu

Each flavour gets its own virtual environment, so installing the GPU one never touches `.venv`.
The GPU flavour first checks for an NVIDIA driver (`nvidia-smi`), before downloading gigabytes of
CUDA wheels, and stops with one message and exit code 3 where there is none.

Stdlib only: it runs before any environment exists, on Linux, macOS and Windows (no `make` needed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements" / "locks"
PYTHON = (3, 11)
NO_GPU = 3  # exit code: the machine has no usable NVIDIA GPU (make test-gpu reports it as such)


class InstallError(Exception):
    """What is missing and how to fix it; printed without a traceback."""


def locks_for(flavour: str, system: str | None = None) -> list[Path]:
    """The lock files to install, in order, for a flavour on this (or the named) OS."""
    system = (system or platform.system()).lower()
    if flavour == "gpu":
        if system != "linux":
            raise InstallError("The gpu flavour (CUDA) is locked for Linux x86_64 only. On Windows laptops "
                               "use the cpu flavour (DirectML builds run with onnxruntime-genai-directml; "
                               "see the README).")
        return [LOCKS / "gpu-linux.txt"]
    if system == "linux":
        return [LOCKS / "torch-cpu-linux.txt", LOCKS / "cpu-linux.txt"]
    if system == "darwin":
        return [LOCKS / "cpu-macos.txt"]
    if system == "windows":
        return [LOCKS / "cpu-windows.txt"]
    raise InstallError(f"No lock for {system}: the course is locked for Linux, macOS and Windows.")


def check_python(python: str) -> None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise InstallError(f"{python} was not found. The course needs Python 3.11: install it with "
                           "`uv python install 3.11` (or your OS's package manager), then run "
                           "`make install PYTHON=python3.11`.") from None
    if tuple(map(int, out)) != PYTHON:
        raise InstallError(f"{python} is Python {'.'.join(out)}; the locks are compiled and tested for Python "
                           "3.11. Shortest way to one: `uv python install 3.11`, then "
                           "`make install PYTHON=$(uv python find 3.11)`.")


def check_nvidia_gpu() -> str:
    """`nvidia-smi`'s GPU line, or InstallError naming what is missing. Before any download."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise InstallError("make test-gpu needs an NVIDIA GPU with its driver, and this machine has none: "
                           "`nvidia-smi` was not found. Run it on a GPU runner (driver >= 580 for the CUDA 13 "
                           "torch and CUDA 12 onnxruntime-gpu it installs), or run `make test` for the CPU "
                           "profile. Nothing was installed.")
    query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    run = subprocess.run(query, capture_output=True, text=True)
    if run.returncode != 0 or not run.stdout.strip():
        detail = (run.stderr or run.stdout).strip().splitlines()[:1]
        raise InstallError(f"`nvidia-smi` found no usable GPU ({' '.join(detail) or 'no output'}). Check the "
                           "NVIDIA driver (`nvidia-smi` must list the GPU). Nothing was installed.")
    return run.stdout.strip().splitlines()[0]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def stamp_text(flavour: str, locks: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in locks + [REPO / "pyproject.toml"]:
        digest.update(path.read_bytes())
    return f"{flavour} {digest.hexdigest()}\n"


def install(flavour: str, venv: Path, python: str, quiet: bool = True, wheelhouse: Path | None = None) -> None:
    locks = locks_for(flavour)
    if flavour == "gpu":
        print(f"GPU: {check_nvidia_gpu()}")
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == stamp_text(flavour, locks):
        return
    check_python(python)
    if not venv_python(venv).exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"] + (["--quiet"] if quiet else [])
    if wheelhouse:   # offline, from `make wheelhouse`; the hashes are checked all the same
        pip += ["--no-index", "--find-links", str(wheelhouse)]
    for lock in locks:
        print(f"installing {lock.relative_to(REPO)} into {venv}")
        no_deps = ["--no-deps"] if lock.name.startswith("torch-") else []  # its dependencies are in the next lock
        subprocess.run(pip + ["--require-hashes", *no_deps, "-r", str(lock)], check=True)
    subprocess.run(pip + ["--no-deps", "--no-build-isolation", "-e", str(REPO)], check=True)
    name, display = ("labkit", "Python (labkit)") if flavour == "cpu" else ("labkit-gpu", "Python (labkit, GPU)")
    subprocess.run([py, "-m", "ipykernel", "install", "--sys-prefix", "--name", name, "--display-name", display],
                   check=True, stdout=subprocess.DEVNULL)
    check_consistent(py, flavour)
    stamp.write_text(stamp_text(flavour, locks))


def check_consistent(py: str, flavour: str) -> None:
    """`pip check`, except that labkit's own metadata names the CPU onnxruntime packages, which the gpu
    flavour replaces by their CUDA builds (same modules)."""
    run = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in run.stdout.splitlines() if line.strip() and not line.startswith("No broken")
                and not (flavour == "gpu" and re.match(r"labkit .* requires onnxruntime(-genai)?,", line))]
    if problems:
        raise InstallError("the installed packages do not fit together (`pip check`):\n  " + "\n  ".join(problems))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--venv", type=Path, help="default: .venv (cpu) or .venv-gpu (gpu)")
    parser.add_argument("--python", default=os.environ.get("PYTHON", "python3.11"))
    parser.add_argument("--check-gpu", action="store_true", help="only check for an NVIDIA GPU and driver")
    parser.add_argument("--wheelhouse", type=Path, help="install offline from this folder (make wheelhouse)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    venv = args.venv or REPO / (".venv" if args.flavour == "cpu" else ".venv-gpu")
    try:
        if args.check_gpu:
            print(f"GPU: {check_nvidia_gpu()}")
            return 0
        install(args.flavour, venv, args.python, quiet=not args.verbose, wheelhouse=args.wheelhouse)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_GPU if args.flavour == "gpu" or args.check_gpu else 2
    except subprocess.CalledProcessError as exc:
        print(f"error: `{' '.join(map(str, exc.cmd))}` failed (exit {exc.returncode}); its output is above.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
