"""What a build needs (RAM, disk, minutes) and what this machine has, from measurements on shadows.

The numbers come from `make bench-scale` on the full-size Phi-3.5-mini shadow (random weights,
exact architecture; see `labkit.shadow`) on a 2-core, 24 GB x86-64 machine, building with labkit's
one-MatMul-at-a-time quantization (`labkit.lean`). Other checkpoints are scaled by their parameter
count above a fixed overhead (the Python process with torch and ONNX Runtime loaded). Lab 00 shows
these per lab before anything is downloaded or built; lab 01 refuses a build that will not fit.
"""

from __future__ import annotations

import json
import math
import shutil

from . import paths
from .errors import InputError, LabkitError

GB = 1e9
PHI35_MINI_PARAMETERS = 3_821_079_552
PROCESS_OVERHEAD_BYTES = int(0.6 * GB)     # python + torch + onnxruntime imported, nothing loaded

# The course's reference `make bench-scale` run (full-size Phi-3.5-mini shadow; its machine and date are in the
# file): the same numbers lab 01 shows under this table, so the two never disagree.
_REFERENCE = json.loads((paths.REPO / "docs" / "measured" / "bench-scale.json").read_text(encoding="utf-8"))


def _measured(row: dict) -> dict:
    """A reference row's peak RAM, size and minutes. The peak is anonymous memory where the run recorded it
    (`labkit.memwatch`): the resident set also counts the memory-mapped checkpoint's cached pages, which the kernel
    drops rather than run out of memory, so it overstates the need by up to the checkpoint's size."""
    return {"peak_rss_bytes": row.get("peak_anon_bytes") or row["peak_rss_bytes"], "size_bytes": row["size_bytes"],
            "build_seconds": row["build_seconds"]}


MEASURED_PHI35_MINI = {precision: _measured(_REFERENCE[precision]) for precision in ("int4", "int8", "fp32")}


# make bench-scale --phi4, the same reference run: the full-size Phi-4-mini shadow's INT4 build. Its o200k vocabulary
# makes the difference at the same parameter count: an FP32 embedding table of 2.46 GB, and a quantized copy of it as
# the LM head (the builder unties the tied matrix), built in slices (labkit.lean).
PHI4_MINI_PARAMETERS = 3_836_021_760
MEASURED_PHI4_MINI = {"int4": _measured(_REFERENCE["phi-4-mini"]["int4"])} if "phi-4-mini" in _REFERENCE else {}


def _o200k(config: dict) -> bool:
    """Phi-4-mini's family: a 200,064-row vocabulary. Builds are sized from its own measurement. Lab 01."""
    return config.get("vocab_size", 0) >= 200_000


# make bench-scale --vision: the full-size Phi-3.5-vision shadow exported (fp32 vision, INT4 decoder), 2 cores /
# 24 GB, 2026-11-29, one run: its folder's size and minutes (the default int8 folder links to it, so its disk is
# this one's). The peak: the reference run's anonymous peak of the default export where it recorded one.
PHI35_VISION_PARAMETERS = 4_146_621_440
MEASURED_PHI35_VISION_EXPORT = {"peak_rss_bytes": _REFERENCE.get("vision", {}).get("peak_anon_bytes") or 8_174_338_048,
                                "size_bytes": 4_025_720_961, "build_seconds": 283.9}


def vision_export_requirement(config: dict) -> dict:
    """Peak RAM, folder size and minutes of labkit's Phi-3.5-vision export (fp32 vision, INT4 decoder). Lab 02."""
    measured = MEASURED_PHI35_VISION_EXPORT
    text = parameters_of(text_config(config))
    scale = text / PHI35_MINI_PARAMETERS          # the decoder dominates; the CLIP tower is fixed-size
    peak = PROCESS_OVERHEAD_BYTES + (measured["peak_rss_bytes"] - PROCESS_OVERHEAD_BYTES) * scale
    basis = ("measured on the full-size Phi-3.5-vision shadow" if math.isclose(scale, 1.0, rel_tol=0.01)
             else "measured on the full-size Phi-3.5-vision shadow, scaled by decoder parameters")
    return {"peak_rss_bytes": int(peak), "size_bytes": int(measured["size_bytes"] * scale),
            "minutes": measured["build_seconds"] * scale / 60, "basis": basis}


_NO_LIMIT = 1 << 60    # cgroup v1 writes "no limit" as a number near 2**63


def _cgroup_memory() -> tuple[int, int] | None:
    """(limit, bytes in use that cannot be reclaimed) of the tightest memory cgroup this process is in, or None.

    A container or `systemd-run -p MemoryMax=` caps what the process may use below the machine's RAM; a laptop run
    that plans on the machine's RAM would be killed half-way. Page cache the kernel can drop (file pages) is not
    counted as used. Linux only: cgroup v2 (`memory.max`) and v1 (`memory.limit_in_bytes`), with their parents.
    """
    from pathlib import Path

    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    tightest = None
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":                      # v2: one unified hierarchy
            root, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current", "")
        elif "memory" in controllers.split(","):   # v1: the memory controller's own hierarchy
            root, files = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                           "total_")
        else:
            continue
        folder = root / group.lstrip("/")
        while True:
            found = _read_cgroup(folder, *files)
            if found and (tightest is None or found[0] - found[1] < tightest[0] - tightest[1]):
                tightest = found
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return tightest


def _read_cgroup(folder, limit_file: str, usage_file: str, prefix: str) -> tuple[int, int] | None:
    try:
        limit = (folder / limit_file).read_text(encoding="utf-8").strip()
        usage = int((folder / usage_file).read_text(encoding="utf-8"))
        stat_lines = (folder / "memory.stat").read_text(encoding="utf-8").splitlines()
        stat = dict(line.split() for line in stat_lines if " " in line)
    except (OSError, ValueError):
        return None
    if limit == "max" or int(limit) >= _NO_LIMIT:
        return None
    # The cgroup's usage counts the page cache (files read or written: a checkpoint, a build), which the kernel
    # drops before it kills anything; reading a 7.6 GB checkpoint fills it.
    cache = int(stat.get(f"{prefix}active_file", 0)) + int(stat.get(f"{prefix}inactive_file", 0))
    return int(limit), max(0, usage - cache)


def memory_limit_bytes() -> int:
    """The most memory this process's tree may use: its cgroup's limit where one is set, else the RAM. Lab 00."""
    import psutil

    cgroup = _cgroup_memory()
    return min(psutil.virtual_memory().total, cgroup[0]) if cgroup else psutil.virtual_memory().total


def machine() -> dict:
    """Cores, the RAM (or the cgroup limit) and what of it is available, free disk at the model cache. Lab 00."""
    import os

    return {"cores": os.cpu_count(), "total_ram_bytes": memory_limit_bytes(),
            "available_ram_bytes": available_ram_bytes(),
            "memory_limited_by": "cgroup" if _cgroup_memory() else "RAM",
            "free_disk_bytes": shutil.disk_usage(paths.cache_dir()).free, "int8_instructions": int8_instructions()}


def available_ram_bytes() -> int:
    """Memory a new allocation can have now: the RAM's available bytes, or what the cgroup limit leaves. Lab 04."""
    import psutil

    available = psutil.virtual_memory().available
    cgroup = _cgroup_memory()
    return min(available, cgroup[0] - cgroup[1]) if cgroup else available


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`, x86 and Arm; empty elsewhere). Lab 00."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            lines = (line for line in cpuinfo if line.startswith(("flags", "Features")))   # x86, Arm
            return next((set(line.split(":", 1)[1].split()) for line in lines), set())
    except OSError:
        return set()


def int8_instructions(flags: set[str] | None = None) -> str:
    """The fastest int8 dot-product instructions this CPU has ("unknown" off Linux). Lab 00.

    INT4 and INT8 prefill run on them (accuracy level 4 computes in int8), so two machines' prefill timings
    compare only when these match."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                       ("avx2", "AVX2 (no VNNI)"), ("asimddp", "Arm dot product")):
        if flag in flags:
            return name
    return "unknown" if not flags else "none of AVX2, VNNI, AMX or Arm dot product"


def parameters_of(config: dict) -> int:
    """Parameter count of a decoder-only checkpoint from its config.json values (no weights read). Lab 00."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inter = config["intermediate_size"]
    vocab = config["vocab_size"]
    attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    mlp = 3 * hidden * inter
    per_layer = attention + mlp + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + hidden


def kv_cache_bytes_per_token(config: dict, bytes_per_value: int = 4) -> int:
    """Bytes of KV cache one token of context holds: a key and a value per layer and KV head (fp32 on CPU). Lab 01.

    Grouped-query attention shares each KV head among several query heads: Phi-4-mini's 8 KV heads for 24 query
    heads hold a third of what Phi-3.5-mini's 32 for 32 do, at the same width."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * bytes_per_value


def build_requirement(precision: str, config: dict) -> dict:
    """Peak RAM, folder size and minutes of a labkit build of a checkpoint with `config`. Lab 01.

    Returns `{"peak_rss_bytes", "size_bytes", "minutes", "basis"}`; `basis` says where the
    numbers come from (shown to attendees next to a refusal)."""
    if precision not in MEASURED_PHI35_MINI:
        raise InputError(f"No measured requirement for {precision!r}; measured: {', '.join(MEASURED_PHI35_MINI)}.")
    if _o200k(config) and precision in MEASURED_PHI4_MINI:
        measured, parameters, name = MEASURED_PHI4_MINI[precision], PHI4_MINI_PARAMETERS, "Phi-4-mini"
    else:
        measured, parameters, name = MEASURED_PHI35_MINI[precision], PHI35_MINI_PARAMETERS, "Phi-3.5-mini"
    scale = parameters_of(config) / parameters
    peak = PROCESS_OVERHEAD_BYTES + (measured["peak_rss_bytes"] - PROCESS_OVERHEAD_BYTES) * scale
    basis = (f"measured on the full-size {name} shadow" if math.isclose(scale, 1.0, rel_tol=0.01)
             else f"measured on the full-size {name} shadow, scaled to {parameters_of(config) / 1e9:.2f}B "
                  "parameters")
    return {"peak_rss_bytes": int(peak), "size_bytes": int(measured["size_bytes"] * scale),
            "minutes": measured["build_seconds"] * scale / 60, "basis": basis}


def text_config(config: dict) -> dict:
    """The text decoder's part of a checkpoint's config (multimodal configs nest it). Lab 00."""
    return config if "hidden_size" in config else config.get("text_config", config)


class DoesNotFit(LabkitError, ValueError):
    """A build or export that this machine cannot hold; the message names the requirement and the way out. Lab 01."""


def check_fits(what: str, need_bytes: int, basis: str, available_bytes: int | None = None,
               total_bytes: int | None = None) -> None:
    """Raise `DoesNotFit` before starting `what` when it needs more RAM than is available. Lab 01."""
    here = machine() if available_bytes is None or total_bytes is None else {}
    available = here["available_ram_bytes"] if available_bytes is None else available_bytes
    total = here["total_ram_bytes"] if total_bytes is None else total_bytes
    if need_bytes > available:
        raise DoesNotFit(
            f"{what} needs about {need_bytes / GB:.1f} GB of RAM at its peak ({basis}); this machine has "
            f"{available / GB:.1f} GB available of {total / GB:.1f} GB. Close other programs, pick a smaller "
            "precision, or use the profile's fallback (the tiny model, or the gpu profile); or start it "
            "anyway")


def requirements_table(config: dict, precisions=("int4", "int8", "fp32")):
    """What building a checkpoint with `config` needs per precision, and whether it fits now (a DataFrame). Lab 01.

    `ram_needed_gb`: the build's measured peak of anonymous memory (`_measured`), not the whole resident set that
    bench-scale's `build_peak_ram_gb` shows beside it."""
    import pandas as pd

    available = machine()["available_ram_bytes"]
    rows = {}
    for precision in precisions:
        need = build_requirement(precision, config)
        rows[precision] = {"ram_needed_gb": round(need["peak_rss_bytes"] / GB, 1),
                           "size_gb": round(need["size_bytes"] / GB, 2), "minutes": round(need["minutes"], 1),
                           "fits_here": need["peak_rss_bytes"] <= available}
    return pd.DataFrame.from_dict(rows, orient="index")


# Lab 03 on Phi-3.5-mini's architecture, measured on 1- and 2-layer shadows, 2 cores, 2026-11-29, one run each:
# llmcompressor AWQ with 32 calibration pairs 103.4 s / 203.7 s; `olive finetune` LoRA r=16, 4 steps of batch 8,
# 32.5 s / 55.9 s. Per layer: AWQ 100.3 s per 32 pairs, LoRA 5.85 s per step; the rest is fixed.
AWQ_SECONDS_PER_LAYER_PER_PAIR = 100.3 / 32
AWQ_FIXED_SECONDS = 3.1
LORA_SECONDS_PER_LAYER_PER_STEP = 23.4 / 4
LORA_FIXED_SECONDS = 9.1


def training_estimate(config: dict, calibration_pairs: int, lora_steps: int) -> dict:
    """Hours lab 03 (AWQ + LoRA) takes on a checkpoint of `config` on this kind of CPU. Lab 03.

    Extrapolated per layer from shallow shadows (see the constants above); AWQ's cost is scaled
    linearly with the number of calibration pairs (measured with 32)."""
    layers = config["num_hidden_layers"]
    width = (config["hidden_size"] * config["intermediate_size"]) / (3072 * 8192)   # Phi-3.5-mini = 1
    awq = AWQ_FIXED_SECONDS + AWQ_SECONDS_PER_LAYER_PER_PAIR * calibration_pairs * layers * width
    lora = LORA_FIXED_SECONDS + LORA_SECONDS_PER_LAYER_PER_STEP * lora_steps * layers * width
    return {"awq_hours": awq / 3600, "lora_hours": lora / 3600, "hours": (awq + lora) / 3600,
            "basis": f"measured per layer on 1- and 2-layer shadows with 2 cores, extrapolated to {layers} layers"}
