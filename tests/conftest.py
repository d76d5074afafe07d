"""Test-wide setup: offline, no network, disk enough to start, a clear failure when nothing was collected."""

import functools
import ipaddress
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.core import allocator

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["OLIVE_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The course runs in a second process beside the unit tests (see _start_course). PyTorch's OpenMP threads spin
# while they wait: with two busy processes on 2 cores they burned the CPU the other needed (two LoRA fine-tunes
# side by side: 137 s spinning, 54 s passive). Set before anything imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The suite's models are tiny or 1- and 2-layer shadows: its subprocesses (the course, Olive, builds) keep freed
# memory for reuse (labkit.allocator: LoRA steps 40 % faster). Run pytest itself this way with `make test`.
os.environ.update(allocator.keep_freed_memory(dict(os.environ)))
# Every child process the suite starts runs as on macOS and Windows: multiprocessing spawns, os.fork fails
# (tests/spawn/sitecustomize.py). So does this process's multiprocessing.
SPAWN_ONLY = Path(__file__).parent / "spawn"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SPAWN_ONLY), os.environ.get("PYTHONPATH")]))
multiprocessing.set_start_method("spawn", force=True)

PROFILE = os.environ.get("LABKIT_PROFILE", "cpu")
# Root on Linux with a cgroup memory controller: tools/memory_limit.py can put a run under a hard memory limit.
CGROUPS_WRITABLE = (os.name == "posix" and os.geteuid() == 0
                    and (Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers").exists()))

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    """Tests make no network call: only loopback (Jupyter kernels talk over 127.0.0.1)."""
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise OSError(f"network access blocked in tests: {address}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


@functools.cache
def has_cuda() -> bool:
    """A real CUDA session ran (labkit.gpu.probe), not just CUDAExecutionProvider in a provider list."""
    from labkit import gpu
    return gpu.probe().ok


def pytest_collection_modifyitems(config, items):
    # The course, the bench run and the laptop-profile course run in the background from the start; the tests that
    # read their outputs go last, the laptop run's (the lowest priority, see _background) at the very end.
    def waits_for(item) -> int:
        fixtures = getattr(item, "fixturenames", ())
        if "laptop_run" in fixtures:
            return 3
        return 2 if _uses_course(item) else 1 if "bench_scale_quick" in fixtures else 0
    items.sort(key=waits_for)
    # So that `-m "not course and not bench"` (CI's platform jobs: unit tests only) starts no background run.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if (_uses_course(item) or "laptop_run" in fixtures) and item.get_closest_marker("course") is None:
            item.add_marker("course")
        if "bench_scale_quick" in fixtures and item.get_closest_marker("bench") is None:
            item.add_marker("bench")
    if not any("cuda" in item.keywords for item in items) or has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run `make test-gpu` on a machine with one "
                                   "(it installs the GPU environment, .venv-gpu)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session):
    from preflight import disk_shortfall
    shortfall = disk_shortfall()
    if shortfall:
        pytest.exit(f"Not started: {shortfall}", returncode=3)


def pytest_sessionfinish(session, exitstatus):
    # pytest exits 5 when it collected no tests; for this course that is a failure, not a pass.
    if exitstatus == 5:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def tiny_dir():
    from labkit import models
    return models.create_tiny("tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_builds(tiny_dir):
    """FP32, INT8 and INT4 builds of the course's tiny model (cached across runs)."""
    from labkit import build
    return {p: build.build("tiny", p, progress=False) for p in ("fp32", "int8", "int4")}


@dataclass
class CourseRun:
    """The course as `make course` runs it, once per test session, with the test parameters."""

    run_dir: Path
    failure: str | None

    @property
    def results(self) -> dict:
        path = self.run_dir / "results.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def lab(self, stem: str) -> dict:
        """A lab's recorded results; fails the test with the course's error when the lab did not finish."""
        if stem not in self.results:
            pytest.fail(f"{stem} recorded no results in the session's course run {self.run_dir}: "
                        f"{self.failure or 'it did not run'}")
        return self.results[stem]


COURSE_FIXTURES = {"course_run", "travel_export"}
_course = {}   # the background `labkit course` process of this session, once started


def _background(command: list[str]) -> list[str]:
    """A background run that only takes the CPU the rest leaves idle (`nice -n 19`, where there is `nice`).

    The suite's critical path is the cpu course and the tests after it; the bench run and the laptop-profile course
    are read last. At equal priority they took the cores from the course; at the lowest they fill the gaps where the
    browser and hub tests wait on pages and servers."""
    return ["nice", "-n", "19", *command] if shutil.which("nice") else command


def _uses_course(item) -> bool:
    """Reads the course's outputs: a course fixture, or the `course` mark where only some parameters do."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(COURSE_FIXTURES & fixtures) or item.get_closest_marker("course") is not None


def _start_course() -> None:
    """`python -m labkit course` with the test parameters, in the background, into a run folder of its own.

    It runs while the unit tests do (they share the verified cache, whose locks make each output once); the
    tests that read its outputs run last and wait for it."""
    from parameters import course_parameters

    from labkit import paths

    run_dir = paths.runs_root() / f"pytest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    (run_dir / "parameters.json").write_text(json.dumps(course_parameters(), indent=2))
    log = (run_dir / "course.log").open("w")
    # LABKIT_RUNS: hermetic, no results of earlier runs are found (lab 04 finds lab 03's in this run folder).
    env = dict(os.environ, LABKIT_RUNS=str(run_dir), LABKIT_PLAIN_PROGRESS="1")
    env.pop("LABKIT_RUN_DIR", None)
    command = [sys.executable, "-m", "labkit", "course", "--profile", PROFILE,
               "--parameters", str(run_dir / "parameters.json"), "--run-dir", str(run_dir)]
    _course.update(run_dir=run_dir, log=run_dir / "course.log",
                   process=subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True))
    log.close()


@dataclass
class BenchScaleQuick:
    done: subprocess.CompletedProcess
    out: Path


_bench = {}    # the background `make bench-scale-quick` of this session, once started


def _start_bench_scale_quick() -> None:
    """`make bench-scale-quick`'s command with one timed run per depth, in the background like the course.

    It keeps one core busy for over a minute; run in its turn it ran after the course had finished, with the
    other core idle. Started first, it shares the cores with the course and the unit tests instead."""
    from helpers import makefile_recipe

    folder = Path(tempfile.mkdtemp(prefix="pytest-bench-scale-quick-"))
    out = folder / "bench-scale.json"
    command = [*makefile_recipe("bench-scale-quick"), "--runs", "1", "--out", str(out)]
    stdout, stderr = (folder / "stdout.log").open("w"), (folder / "stderr.log").open("w")
    _bench.update(command=command, out=out, folder=folder,
                  process=subprocess.Popen(_background(command), stdout=stdout, stderr=stderr,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
    stdout.close()
    stderr.close()


_laptop = {}   # the background laptop-profile course on 1-layer shadows (tests/test_laptop_course.py), once started


def _start_laptop_course() -> None:
    """`make laptop-sheet`'s command on 1-layer shadows with tests/parameters.py's quick settings, in the background.

    Started with the cpu course, not after it: the two share lab 03's cached AWQ, LoRA and export (the cache's
    locks make each once), and the cores are busy either way."""
    from helpers import makefile_recipe
    from parameters import LAPTOP_QUICK_PARAMETERS

    folder = Path(tempfile.mkdtemp(prefix="pytest-laptop-"))
    (folder / "parameters.json").write_text(json.dumps(LAPTOP_QUICK_PARAMETERS))
    run_dir = folder / "runs" / "laptop"
    # `make laptop-sheet` as the Makefile runs it (16 GB cgroup, LABKIT_SHADOWS=1), into this session's folders.
    command = makefile_recipe("laptop-sheet")
    command.remove("--cold-cache")     # here lab 03's tiny-model steps are the session course's, not made again
    command[command.index("--sheet") + 1] = str(folder / "sheet.json")
    # The exercises' solutions are the same code on another model: the session's cpu course runs them.
    command += ["--parameters", str(folder / "parameters.json"), "--run-dir", str(run_dir), "--no-exercises"]
    limited = CGROUPS_WRITABLE
    if not limited:    # a memory cgroup needs root: the same course without the limit
        command = command[command.index("--") + 1:]
    env = dict(os.environ, LABKIT_SHADOW_LAYERS="1", LABKIT_RUNS=str(folder / "runs"), LABKIT_PLAIN_PROGRESS="1")
    env.pop("LABKIT_RUN_DIR", None)
    log = (folder / "course.log").open("w")
    from labkit import paths
    _laptop.update(folder=folder, run_dir=run_dir, log=folder / "course.log", limited=limited,
                   process=subprocess.Popen(_background(command), env=env, cwd=paths.REPO, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True))
    log.close()


@dataclass
class LaptopRun:
    run_dir: Path
    results: dict
    sheet: dict
    limited: bool     # ran inside make laptop-sheet's 16 GB cgroup


@pytest.fixture(scope="session")
def laptop_run() -> LaptopRun:
    """The session's background laptop-profile course on 1-layer shadows, once it has finished."""
    if not _laptop:
        _start_laptop_course()
    code = _laptop["process"].wait(timeout=1200)
    tail = _laptop["log"].read_text(errors="replace")[-4000:]
    assert code == 0, f"the laptop-profile course exited {code}:\n{tail}"
    folder = _laptop["folder"]
    return LaptopRun(_laptop["run_dir"], json.loads((_laptop["run_dir"] / "results.json").read_text()),
                     json.loads((folder / "sheet.json").read_text()), _laptop["limited"])


def pytest_collection_finish(session):
    if any(_uses_course(item) for item in session.items) and not _course:
        _start_course()
    if any("bench_scale_quick" in getattr(item, "fixturenames", ()) for item in session.items) and not _bench:
        _start_bench_scale_quick()
    if any("laptop_run" in getattr(item, "fixturenames", ()) for item in session.items) and not _laptop:
        _start_laptop_course()
    if _course and hasattr(os, "nice"):
        # The course is the suite's critical path (the tests that read it run last): the tests beside it, and what
        # they start, yield the CPU to it. On 2 cores it finished ≈ 870 s in at equal priority, at ~0.6 of a core.
        os.nice(5)


def pytest_unconfigure(config):
    for job in (_course, _bench, _laptop):
        process = job.get("process")
        if process is not None and process.poll() is None:   # interrupted: stop it and its children
            import signal
            if hasattr(os, "killpg"):
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.kill()
    for job in (_bench, _laptop):
        if job:
            shutil.rmtree(job["folder"], ignore_errors=True)


@pytest.fixture(scope="session")
def bench_scale_quick() -> BenchScaleQuick:
    """The session's background `make bench-scale-quick` run (one timed run per depth), once it has finished."""
    if not _bench:
        _start_bench_scale_quick()
    code = _bench["process"].wait(timeout=900)
    folder = _bench["folder"]
    done = subprocess.CompletedProcess(_bench["command"], code, (folder / "stdout.log").read_text(),
                                       (folder / "stderr.log").read_text())
    return BenchScaleQuick(done, _bench["out"])


@pytest.fixture(scope="session")
def course_run() -> CourseRun:
    """Every notebook, in order, into one run folder, as `make course` runs them (lab 04 works on lab 03's
    output, lab 05 reports every lab). Tests that need a trained adapter or an export read them from here."""
    if not _course:
        _start_course()
    code = _course["process"].wait()
    tail = _course["log"].read_text(errors="replace")[-4000:]
    return CourseRun(_course["run_dir"], None if code == 0 else f"`labkit course` exited {code}:\n{tail}")


@pytest.fixture(scope="session")
def travel_export(course_run):
    """(genai folder, travel .onnx_adapter, brief .onnx_adapter) that labs 03 and 04 made in the session's course."""
    lab03, lab04 = course_run.lab("03_olive_awq_lora"), course_run.lab("04_inference")
    return Path(lab03["onnx_dir"]), Path(lab03["adapter"]), Path(lab04["adapters"]["brief"])
