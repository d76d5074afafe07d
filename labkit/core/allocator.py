"""glibc's allocator, told to keep freed memory for the next allocation: faster torch work on small models. Labs 03–04.

glibc serves each allocation over its mmap threshold (at most 32 MB, adjusted as it goes) with a fresh mapping
and unmaps it when freed, so the kernel zeroes and faults its pages in again for the next one. A LoRA step on
the course's tiny model allocates logits of 8 × 80 × 32,064 floats (82 MB) several times over: on 2 cores the
step spent 0.22 s of its 0.32 s in the kernel. With both thresholds at 4 GiB freed memory is reused: 0.19 s a
step, and a 60-step `olive finetune` took 31 s instead of 44 s, with the same losses.

Used where the models are small (the cpu profile's course, fine-tunes of checkpoints under 2 GiB, the test
suite): keeping up to 4 GiB of freed memory is harmless there, but not beside a real-size model on a 16 GB
laptop. A real-size fine-tune keeps at most 1 GiB (`KEEP_FREED_BOUNDED`): on a CPU without bfloat16 instructions
every frozen weight becomes a float32 copy of up to 394 MB on each pass (labkit.training.bf16_linear), and glibc
mapped and unmapped each one. Phi-3.5-mini's shadow, LoRA on the last 8 layers, 1 block a step, 2-core AVX2 CPU
(three steps, one run each): 23.5 s a step by default, 14.7 s with the bounded setting (peak 9.6 GB), 14.8 s with
4 GiB (9.8 GB). Only glibc reads these variables (macOS and Windows ignore them); a value already set wins.
"""

from __future__ import annotations

from pathlib import Path

KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}
# allocations up to 512 MiB from kept memory, at most 1 GiB of it kept: a real-size fine-tune
KEEP_FREED_BOUNDED = {"MALLOC_MMAP_THRESHOLD_": str(512 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
SMALL_WEIGHTS_BYTES = 2 << 30


def thresholds(env, setting: dict = KEEP_FREED) -> dict:
    """glibc's mmap and trim thresholds: `env`'s own where it sets them, else `setting`'s. Lab 03."""
    return {name: env.get(name, value) for name, value in setting.items()}


def keep_freed_memory(env: dict, setting: dict = KEEP_FREED) -> dict:
    """`env` with glibc's mmap and trim thresholds of `setting` (4 GiB), unless `env` sets them already. Lab 03."""
    return {**env, **thresholds(env, setting)}


def is_small_checkpoint(model_dir: str | Path) -> bool:
    """The checkpoint's weight files add up to less than 2 GiB (the course's tiny models, not Phi-3.5). Lab 03."""
    weights = [*Path(model_dir).glob("*.safetensors"), *Path(model_dir).glob("*.bin")]
    return sum(p.stat().st_size for p in weights) < SMALL_WEIGHTS_BYTES
