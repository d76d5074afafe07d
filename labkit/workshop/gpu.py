"""Is there a GPU this course can use? A real probe, not a provider list. Lab 00; `make test-gpu` runs it first.

`onnxruntime.get_available_providers()` lists CUDAExecutionProvider whenever the GPU package is
installed, with or without a GPU or driver, and a session asked for CUDA silently falls back to
the CPU. So the probe:

1. reads `nvidia-smi` (GPU name, memory, driver version, the CUDA version the driver supports);
2. creates a tiny ONNX Runtime session on the CUDA execution provider, checks that the session
   really kept CUDA, runs it and checks the result.

    python -m labkit gpu-probe      # prints the probe; exit code 3 when no usable GPU
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

NO_GPU_EXIT = 3


@dataclass
class GpuProbe:
    """What the probe found. `problem` says what is missing and how to fix it. Lab 00."""

    ok: bool
    name: str | None = None
    memory_mib: int | None = None
    driver: str | None = None
    cuda_version: str | None = None       # the highest CUDA the driver supports (nvidia-smi's header)
    onnxruntime: str | None = None
    providers: list[str] = field(default_factory=list)
    problem: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if not self.ok:
            return f"no usable GPU: {self.problem}"
        return (f"{self.name}, {self.memory_mib / 1024:.0f} GiB, driver {self.driver} (CUDA {self.cuda_version}); "
                f"an ONNX Runtime {self.onnxruntime} session ran on CUDAExecutionProvider")


def nvidia_smi() -> dict | None:
    """`{name, memory_mib, driver, cuda_version}` of the first GPU, or None without a working nvidia-smi. Lab 00."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        query = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                                "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if query.returncode != 0 or not query.stdout.strip():
        return None
    return parse_nvidia_smi(query.stdout, header.stdout)


def parse_nvidia_smi(query_csv: str, header: str) -> dict:
    """`nvidia-smi --query-gpu=name,memory.total,driver_version` fields plus the header's CUDA version. Lab 00."""
    name, memory, driver = [part.strip() for part in query_csv.strip().splitlines()[0].split(",")]
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    return {"name": name, "memory_mib": int(float(memory)), "driver": driver,
            "cuda_version": cuda.group(1) if cuda else None}


def _tiny_model() -> bytes:
    """A one-node ONNX model, y = x + x."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def run_cuda_session() -> str | None:
    """Create and run a tiny session on the CUDA EP; None if it really ran there, else why not. Lab 00."""
    import numpy as np
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):   # CUDA/cuDNN from the nvidia-* wheels the gpu lock installs
        try:
            ort.preload_dlls()
        except Exception:   # noqa: BLE001 — missing libraries show up as the session's error below
            pass
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("this onnxruntime has no CUDAExecutionProvider (the CPU package is installed): use the GPU "
                "environment, `make test-gpu` (.venv-gpu)")
    try:
        session = ort.InferenceSession(_tiny_model(), providers=["CUDAExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 — any failure here means: no usable CUDA
        return f"an ONNX Runtime session on CUDA failed: {str(exc).splitlines()[0]}"
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return ("ONNX Runtime fell back to the CPU (CUDA libraries or driver missing; see the log above). "
                "Check `nvidia-smi` and that the driver supports CUDA 12")
    x = np.arange(4, dtype=np.float32)
    y = session.run(None, {"x": x})[0]
    if not np.array_equal(y, x + x):
        return f"the CUDA session computed {y.tolist()} instead of {(x + x).tolist()}"
    return None


def probe() -> GpuProbe:
    """nvidia-smi, then a real ONNX Runtime session on CUDA. Never raises. Lab 00."""
    import onnxruntime as ort

    found = GpuProbe(ok=False, onnxruntime=ort.__version__, providers=ort.get_available_providers())
    smi = nvidia_smi()
    if smi is None:
        found.problem = ("no NVIDIA GPU or driver: `nvidia-smi` is missing or lists no GPU. Use profile='cpu', "
                         "or run on a machine with an NVIDIA GPU and driver >= 580")
        return found
    found.name, found.memory_mib = smi["name"], smi["memory_mib"]
    found.driver, found.cuda_version = smi["driver"], smi["cuda_version"]
    found.problem = run_cuda_session()
    found.ok = found.problem is None
    return found
