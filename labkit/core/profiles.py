"""Course profiles: `cpu` (tiny local models, CPU EP), `laptop` (the real Phi-3.5 models on the CPU EP)
and `gpu` (CUDA EP, real Phi-3.5 models).

Pick one with the notebooks' `profile` parameter or the `LABKIT_PROFILE` environment variable.
Taught in lab 00.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import InputError


@dataclass(frozen=True)
class Profile:
    """What a profile sets: execution provider, models, precisions to build. Lab 00."""

    name: str
    execution_provider: str      # model builder's -e value: "cpu" or "cuda"
    text_model: str              # `tiny` or a hub id
    vision_model: str
    precisions: tuple[str, ...]  # what lab 01 builds on this EP
    torch_device: str
    cell_timeout_s: int          # papermill's limit per cell: a hung cell fails the run instead of hanging CI
    quantized: dict = field(default_factory=dict)   # build options of its INT4 and INT8 builds ({}: the builder's)


LAPTOP_QUANTIZED = {"block_size": 128, "accuracy_level": 4, "extra": {"prune_lm_head": "true"}}

PROFILES = {
    # 20 min per cell: lab 03's 600-step LoRA cell takes 5 min on 2 idle cores and 10 on a busy or slower machine
    "cpu": Profile("cpu", "cpu", "tiny", "tiny-vision", ("fp32", "int8", "int4"), "cpu", 1200),
    # An attendee's 16 GB laptop without an NVIDIA GPU: the real checkpoints, INT4 (and INT8 where memory
    # allows) on the CPU EP. What each lab needs here comes from labkit.sizing (measured on shadows).
    # Its INT4 and INT8 are what decodes and prefills fastest on a CPU (lab 01 measures the quality; `make
    # bench-peers` the speed against llama.cpp and OpenVINO): blocks of 128 and int8 compute, as Microsoft's
    # published CPU builds of Phi-3.5, and the logits of the last position only (a prompt's others are never read).
    "laptop": Profile("laptop", "cpu", "microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3.5-vision-instruct",
                      ("int4", "int8"), "cpu", 3 * 3600, LAPTOP_QUANTIZED),
    "gpu": Profile("gpu", "cuda", "microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3.5-vision-instruct",
                   ("fp16", "int4", "fp32"), "cuda", 7200),   # real-size builds and exports
}


def get_profile(name: str | None = None) -> Profile:
    """The profile named, else `$LABKIT_PROFILE`, else `cpu`. Lab 00."""
    name = (name or os.environ.get("LABKIT_PROFILE") or "cpu").lower()
    if name not in PROFILES:
        raise InputError(f"Unknown profile {name!r}. Use one of: {', '.join(PROFILES)} "
                         "(set the notebook's `profile` parameter or LABKIT_PROFILE).")
    return PROFILES[name]
