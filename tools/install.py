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

from lock import PYPI_TORCH_NOTE  # tools/lock.py, beside this file (stdlib only too)

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements" / "locks"
NO_GPU = 3  # exit code: the machine has no usable NVIDIA GPU (make test-gpu reports it as such)
# Preferred first: 3.11 is what the GPU runner and Linux's CPU torch wheel are locked for (see tools/lock.py).
PREFERRED = ("3.11", "3.12", "3.13")
# Each supported Python has a folder of locks (tools/lock.py makes them); nothing else is supported.
TESTED = "Linux x86_64 with Python 3.11, 3.12 and 3.13 (README, \"Supported machines\")"
# Why a Python outside the locks is refused, where a pinned package says so (`python tools/lock.py --check-python`).
NO_WHEELS = {"3.10": "onnxruntime 1.32.0 publishes no wheels for Python 3.10 (its oldest is 3.11)"}

# What the interpreter reports about itself: version, OS, CPU, pointer size, free-threading, macOS version.
PROBE = ("import platform, struct, sys, sysconfig; "
         "print(*sys.version_info[:2], platform.system(), platform.machine().lower(), struct.calcsize('P') * 8, "
         "int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))), platform.mac_ver()[0] or '-')")


class InstallError(Exception):
    """What is missing and how to fix it; printed without a traceback."""


def supported_pythons() -> list[str]:
    return sorted((d.name[2:] for d in LOCKS.glob("py3.*") if (d / "cpu-linux.txt").exists()),
                  key=lambda v: tuple(map(int, v.split("."))))


def locks_for(flavour: str, system: str | None = None, python: str = "3.11") -> list[Path]:
    """The lock files to install, in order, for a flavour, OS and Python version ("3.12")."""
    system = (system or platform.system()).lower()
    folder = LOCKS / f"py{python}"
    if not folder.is_dir():
        raise InstallError(f"No locks for Python {python}: the course is locked for Python "
                           f"{', '.join(supported_pythons())}.")
    if flavour == "gpu":
        if system != "linux":
            raise InstallError("The gpu flavour (CUDA) is locked for Linux x86_64 only. On Windows laptops "
                               "use the cpu flavour (DirectML builds run with onnxruntime-genai-directml; "
                               "see the README).")
        if not (folder / "gpu-linux.txt").exists():
            raise InstallError(f"The gpu flavour is locked for Python 3.11 only (the GPU runner's), not {python}: "
                               "`make test-gpu PYTHON=python3.11` (`uv python install 3.11` gets one).")
        return [folder / "gpu-linux.txt"]
    if system == "linux":
        torch = folder / "torch-cpu-linux.txt"   # absent where the lock pins PyPI's torch (tools/lock.py)
        # then the workshop server's JupyterHub (`make hub`), locked to the same pins (requirements/hub.in)
        return [*([torch] if torch.exists() else []), folder / "cpu-linux.txt", folder / "hub-linux.txt"]
    if system == "darwin":
        return [folder / "cpu-macos.txt"]
    if system == "windows":
        return [folder / "cpu-windows.txt"]
    raise InstallError(f"No lock for {system}: the course is locked for Linux, macOS and Windows.")


def probe(python: list[str]) -> dict | None:
    """Facts about one interpreter (a command: ["py", "-3.12"] on Windows), or None if it does not run."""
    try:
        run = subprocess.run([*python, "-c", PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = run.stdout.split()
    if run.returncode or len(out) != 7:
        return None
    return {"version": f"{out[0]}.{out[1]}", "system": out[2], "machine": out[3], "bits": int(out[4]),
            "free_threaded": out[5] == "1", "macos": out[6]}


def platform_problem(facts: dict) -> str | None:
    """Why the stack has no wheels for this interpreter's platform, with what to use instead; None if it has."""
    system, machine = facts["system"], facts["machine"]
    alternative = ("Use a Linux x86_64, Apple-silicon Mac or Windows x64 machine, or a GitHub Codespace "
                   "(.devcontainer/, README \"No suitable laptop\").")
    if facts["bits"] != 64:
        return (f"this Python is {facts['bits']}-bit; torch and ONNX Runtime publish 64-bit wheels only. "
                "Install a 64-bit Python 3.11-3.13 (python.org's \"Windows installer (64-bit)\").")
    if facts["free_threaded"]:
        return ("this is a free-threaded Python (3.13t); onnxruntime-genai 0.12.2 has no wheels for it. "
                "Use the regular build (`uv python install 3.13`).")
    if system == "Linux" and machine not in ("x86_64", "amd64"):
        return (f"Linux on {machine}: onnxruntime-genai 0.12.2 publishes Linux wheels for x86_64 only. " + alternative)
    if system == "Darwin":
        if machine != "arm64":
            return ("an Intel Mac: torch 2.13 and onnxruntime 1.32 publish macOS wheels for Apple silicon only. "
                    + alternative)
        if facts["macos"] != "-" and int(facts["macos"].split(".")[0]) < 14:
            return (f"macOS {facts['macos']}: onnxruntime 1.32's macOS wheels need macOS 14 or later. "
                    "Update macOS, or " + alternative[0].lower() + alternative[1:])
    if system == "Windows" and machine not in ("amd64", "x86_64"):
        return (f"Windows on {machine}: torch 2.13 publishes Windows wheels for x64 only. Install the x64 build of "
                "Python (it runs under emulation on Windows on Arm), or " + alternative[0].lower() + alternative[1:])
    if system not in ("Linux", "Darwin", "Windows"):
        return f"{system}: the course is locked for Linux, macOS and Windows. " + alternative
    return None


def check_python(python: list[str], facts: dict | None = None) -> dict:
    """The facts of `python`, or InstallError naming why it cannot hold the course and what to do instead."""
    facts = facts or probe(python)
    shown = " ".join(python)
    if facts is None:
        raise InstallError(f"{shown} was not found (or does not run). The course needs Python "
                           f"{', '.join(supported_pythons())}: install one (`uv python install 3.12`, python.org, "
                           "or your OS's package manager) and run `make install` again. Nothing was installed.")
    problem = platform_problem(facts)
    if problem:
        raise InstallError(f"{shown} cannot hold the course: {problem} Nothing was downloaded.")
    version = facts["version"]
    if version not in supported_pythons():
        why = NO_WHEELS.get(version, f"the course's locks are made and tested for Python "
                                     f"{', '.join(supported_pythons())}, not {version}")
        raise InstallError(f"{shown} is Python {version}: {why}. Install a supported one (`uv python install "
                           f"3.12`), then `make install` finds it by itself (or pass PYTHON=...). "
                           "Nothing was downloaded.")
    return facts


def candidates() -> list[list[str]]:
    """Interpreters to try, preferred first: python3.X on the PATH, the Windows launcher, then python3/python."""
    found = [[path] for v in PREFERRED if (path := shutil.which(f"python{v}"))]
    if os.name == "nt" and shutil.which("py"):
        found += [["py", f"-{v}"] for v in PREFERRED]
    found += [[path] for name in ("python3", "python") if (path := shutil.which(name))]
    return found + [[sys.executable]]


def find_python(requested: str | None = None) -> tuple[list[str], dict]:
    """The interpreter to build the venv with: `requested` (checked), else the first supported one found.

    Without a request, an attendee with only python3.13 on the PATH gets it; if nothing fits, the error
    names each interpreter seen and why it does not."""
    if requested:
        python = [requested]
        return python, check_python(python)
    refused = []
    for python in candidates():
        try:
            return python, check_python(python)
        except InstallError as exc:
            refused.append(str(exc).split(" Nothing was")[0])
    raise InstallError("no Python here can hold the course:\n  " + "\n  ".join(dict.fromkeys(refused)) +
                       f"\nThe course is tested on {TESTED}; install one of those (`uv python install 3.12`) and run "
                       "`make install` again. Nothing was installed.")


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


def venv_version(venv: Path) -> str | None:
    """The Python version of an existing venv ("3.12"), from its pyvenv.cfg; None if there is none."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.exists():
        return None
    match = re.search(r"(?m)^version(?:_info)?\s*=\s*(\d+\.\d+)", cfg.read_text(encoding="utf-8"))
    return match.group(1) if match else None


def install(flavour: str, venv: Path, python: str | None = None, quiet: bool = True,
            wheelhouse: Path | None = None) -> None:
    if flavour == "gpu":
        print(f"GPU: {check_nvidia_gpu()}")
    existing = venv_version(venv) if venv_python(venv).exists() else None
    if existing and not python:   # keep the venv's Python: `make install` again must not switch it
        interpreter, facts = [str(venv_python(venv))], check_python([str(venv_python(venv))])
    else:
        interpreter, facts = find_python(python)
    locks = locks_for(flavour, facts["system"], facts["version"])
    made_for = re.search(r"-py(3\.\d+)$", wheelhouse.name) if wheelhouse else None   # make wheelhouse's naming
    if made_for and made_for.group(1) != facts["version"]:
        raise InstallError(f"{wheelhouse} holds the wheels for Python {made_for.group(1)}, and the venv would be "
                           f"Python {facts['version']}: pass PYTHON=python{made_for.group(1)} (or --python), or make "
                           f"a wheelhouse for {facts['version']} "
                           f"(`make wheelhouse WHEELHOUSE_PYTHON={facts['version']}`). Nothing was installed.")
    stamp = venv / ".installed"
    stamped = stamp.read_text(encoding="utf-8") if stamp.exists() else None
    if existing == facts["version"] and stamped == stamp_text(flavour, locks):
        return
    if existing and existing != facts["version"]:
        remove = f"Remove-Item -Recurse -Force {venv}" if os.name == "nt" else f"rm -rf {venv}"
        raise InstallError(f"{venv} is Python {existing}, and {' '.join(interpreter)} is {facts['version']}: "
                           f"remove {venv} first (`{remove}`) to switch Pythons, or drop PYTHON=.")
    if any(PYPI_TORCH_NOTE in lock.read_text(encoding="utf-8") for lock in locks):
        print(f"note: for Python {facts['version']} on Linux the lock has PyPI's torch, the CUDA build (about 4 GB "
              "more to download than the CPU wheel Python 3.11 gets; it runs on the CPU all the same).")
    if not venv_python(venv).exists():
        print(f"creating {venv} with Python {facts['version']} ({' '.join(interpreter)})")
        subprocess.run([*interpreter, "-m", "venv", str(venv)], check=True)
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
    stamp.write_text(stamp_text(flavour, locks), encoding="utf-8")


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
    parser.add_argument("--python", default=os.environ.get("PYTHON") or None,
                        help="the Python to build the venv with (default: the first of python3.11, python3.12, "
                             "python3.13, python3, python that the course supports)")
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
