"""Test-wide setup: offline, no network, disk enough to start, a clear failure when nothing was collected."""

import functools
import ipaddress
import os
import socket

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["OLIVE_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

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
