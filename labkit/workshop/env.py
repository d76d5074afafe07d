"""Lab 00's environment check: is this machine ready for the course, and if not, what to do.

Each check is one row: what was checked, ok / warn / fail, what was found, and the fix.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import sys
from pathlib import Path

from ..core import paths
from ..core.profiles import get_profile


def probe_gpu():
    """The GPU probe of labkit.gpu (a real CUDA session), for the gpu profile. Lab 00."""
    from .gpu import probe
    return probe()

# What each profile needs, for the whole course (disk for builds, RAM for the largest step).
NEEDS = {
    "cpu": {"disk_gb": 2, "ram_gb": 5},       # the course peaks at ≈ 4.6 GB (lab 03; docs/measured/cpu-course.json)
    "laptop": {"disk_gb": 25, "ram_gb": 10},   # checkpoints 7.6 + 8.3 GB, INT4/INT8 builds (labkit.sizing)
    "gpu": {"disk_gb": 40, "ram_gb": 16, "gpu_gb": 16},
}


def lock_pins(requirements: Path | None = None) -> dict[str, str]:
    """`{package: version}` of the course's pinned top-level packages (requirements/requirements.in). Lab 00.

    The locks in requirements/locks/ pin every package, transitive ones too; these are the ones the
    course names.
    """
    requirements = requirements or paths.REPO / "requirements" / "requirements.in"
    pins = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


# The gpu flavour (.venv-gpu) has the CUDA builds of these packages (same modules, own lock).
_GPU_VARIANTS = {"onnxruntime": "onnxruntime-gpu", "onnxruntime-genai": "onnxruntime-genai-cuda"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_version(package: str) -> str | None:
    """The installed version of a pinned package (its CUDA build counts), `+cpu` tags dropped. Lab 00."""
    version = _version(package) or (_version(_GPU_VARIANTS[package]) if package in _GPU_VARIANTS else None)
    return version.split("+")[0] if version else None


def _row(check, ok, value, fix="", warn=False):
    return {"check": check, "status": "ok" if ok else ("warn" if warn else "FAIL"), "value": value,
            "fix": "" if ok else fix}


def checks(profile: str | None = None, check_network: bool | None = None) -> list[dict]:
    """Every check as a dict row. Lab 00."""
    prof = get_profile(profile)
    rows = []
    venv = Path(sys.prefix) != Path(sys.base_prefix)
    locked = sorted(d.name[2:] for d in (paths.REPO / "requirements" / "locks").glob("py3.*"))
    rows.append(_row("python", "{}.{}".format(*sys.version_info[:2]) in locked, sys.version.split()[0],
                     f"The course is locked for Python {', '.join(locked)}: `make install` creates .venv with one."))
    # The course's environments register its kernel in themselves (tools/install.py): .venv, .venv-gpu, a workshop
    # server's served copy, an image's venv, wherever they live.
    course_venv = venv and any((Path(sys.prefix) / "share" / "jupyter" / "kernels" / name / "kernel.json").exists()
                               for name in ("labkit", "labkit-gpu"))
    rows.append(_row("kernel is the course venv", course_venv, paths.shown(Path(sys.executable)),
                     "Select the 'Python (labkit)' kernel in JupyterLab (registered by `make install`).", warn=True))

    for package, pinned in lock_pins().items():
        installed = installed_version(package)
        rows.append(_row(f"{package}=={pinned}", installed == pinned, installed or "missing",
                         "Run `make install` (python tools/install.py: the hashed lock in "
                         "requirements/locks/) to get the pinned version."))

    import onnxruntime
    # AzureExecutionProvider ships in every onnxruntime wheel: it sends requests to a remote endpoint, never used here
    providers = [p for p in onnxruntime.get_available_providers() if p != "AzureExecutionProvider"]
    rows.append(_row("execution providers", True, ", ".join(providers)))
    gpu = probe_gpu() if prof.execution_provider == "cuda" else None
    rows.append(_row("GPU (CUDA)", gpu is None or gpu.ok,
                     gpu.summary() if gpu else f"not needed by the {prof.name} profile",
                     "The gpu profile needs an NVIDIA GPU, its driver and the GPU environment: run "
                     "`make test-gpu` (it creates .venv-gpu) on such a machine, or use profile='cpu'."))
    from ..core.sizing import int8_instructions, machine

    # Quantized prefill runs on the int8 instructions: they say why a neighbour's laptop is faster
    rows.append(_row("CPU cores", True, f"{os.cpu_count()} (int8 instructions: {int8_instructions()})"))

    here = machine()   # a cgroup's (container's) limit counts, not only the machine's RAM
    ram = here["available_ram_bytes"] / 1e9
    need = NEEDS[prof.name]
    limited = ", cgroup limit" if here["memory_limited_by"] == "cgroup" else ""
    rows.append(_row("free RAM", ram >= need["ram_gb"], f"{ram:.1f} GB (need {need['ram_gb']} GB{limited})",
                     "Close other programs, or use profile='cpu' (tiny models).", warn=prof.name == "cpu"))
    cache = paths.cache_dir()
    disk = shutil.disk_usage(cache).free / 1e9
    rows.append(_row("free disk for models", disk >= need["disk_gb"],
                     f"{disk:.1f} GB at {paths.shown(cache)} (need {need['disk_gb']} GB)",
                     "Free space, or point LABKIT_CACHE at a bigger disk."))
    rows.append(_row("model cache", cache_path_problem(cache) is None, paths.shown(cache),
                     cache_path_problem(cache) or "", warn=True))
    rows.append(_row("run folder", True, paths.shown(paths.run_dir())))
    hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    rows.append(_row("Hugging Face cache", True, hf_home.replace(str(Path.home()), "~", 1)))

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if check_network is None:
        check_network = not offline
    online = _can_reach("huggingface.co") if check_network else False
    state = "offline (HF_HUB_OFFLINE=1)" if offline else ("online" if online else "no network")
    rows.append(_row("network", prof.name == "cpu" or online or offline, state,
                     f"The {prof.name} profile downloads microsoft/Phi-3.5-* once: connect, or pre-download them with "
                     f"`make prefetch PROFILE={prof.name}` and set HF_HUB_OFFLINE=1.", warn=True))
    return rows


WINDOWS = os.name == "nt"
# The deepest cache entries (lab 03's adapter in its temp folder while it is written) add about 150 characters to
# the cache path; Windows refuses paths over 260 unless long paths are turned on.
_WINDOWS_CACHE_PATH_MAX = 100


def cache_path_problem(cache: Path) -> str | None:
    """On Windows, why the model cache's path will break (non-ASCII or too long) and the fix; else None. Lab 00."""
    text = str(Path(cache).resolve())
    if not WINDOWS:
        return None
    if not text.isascii():
        return ("onnxruntime-genai cannot open models under a path with non-ASCII characters on Windows (its issue "
                "1262): set LABKIT_CACHE=C:\\phi-lab-models before starting JupyterLab, or clone the course to "
                "C:\\phi-lab.")
    if len(text) > _WINDOWS_CACHE_PATH_MAX:
        return (f"the path has {len(text)} characters, and the deepest model files add about 150 more: over Windows' "
                "260-character limit. Set LABKIT_CACHE=C:\\phi-lab-models, or turn on long paths (LongPathsEnabled).")
    return None


def _can_reach(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def report(profile: str | None = None, check_network: bool | None = None):
    """The environment check as a table (a pandas DataFrame). Lab 00.

    Prints each problem with its fix; returns the table so the notebook shows it.
    """
    import pandas as pd

    table = pd.DataFrame(checks(profile, check_network)).set_index("check")
    problems = table[table.status != "ok"]
    if problems.empty:
        print("All checks passed: this machine is ready for the course.")
    for check, row in problems.iterrows():
        print(f"[{row.status}] {check}: {row.value}\n        fix: {row.fix}")
    return table


def compact(table):
    """The report with the packages that match the lock folded into one row (mismatches keep theirs). Lab 00.

    Thirty version rows that all say ok bury the few lines an attendee must read."""
    import pandas as pd

    pinned = table.index.str.contains("==")
    matching = pinned & (table.status == "ok").to_numpy()
    row = pd.DataFrame([{"check": "packages", "status": "ok",
                         "value": f"{int(matching.sum())} of {int(pinned.sum())} at the versions of the lock",
                         "fix": ""}]).set_index("check")
    return pd.concat([table[~pinned][:2], row, table[pinned & ~matching], table[~pinned][2:]])


def gpu_line(gpu, profile: str | None = None) -> str:
    """One line about the GPU probe, worded for the profile: only the gpu profile needs one. Lab 00."""
    prof = get_profile(profile)
    if gpu.ok:
        return f"GPU: {gpu.summary()}"
    if prof.execution_provider == "cuda":
        return gpu.summary()
    reason = gpu.problem.split(":")[0]
    return f"GPU: none usable here ({reason}); the {prof.name} profile runs on the CPU and needs none."
