"""`python -m labkit.training.olive_seeded ARGS` is `python -m olive ARGS` with Python's, NumPy's and torch's random
generators seeded first. Lab 03.

Olive 0.13's `--seed` seeds its search sampler, not training, and peft draws each LoRA A matrix from torch's
global generator before the Hugging Face trainer seeds anything. So two `olive finetune` runs with the same
arguments trained different adapters, and lab 03's answer rates moved by 20 points between identical runs. With
the generators seeded the same command trains the same adapter: attendees, instructors and CI see one result.

For `auto-opt` it installs labkit's memory-lean INT4 path in the model builder first (`labkit.making.lean`): the
builder Olive calls would otherwise hold every weight in fp32 while it quantizes, ≈ 40 GB for Phi-3.5-mini, and the
lean path makes the same graph with the checkpoint plus one weight in memory.

With `OLIVE_DISABLE_TELEMETRY=1` (labkit sets it) it also keeps Olive 0.13 from logging its start-up heartbeat:
Olive logs that event before it reads the opt-out, then spends up to 11 s at exit trying to send it (measured on
a machine without internet), in every Olive command outside CI.

For `finetune` on an x86 CPU without bfloat16 instructions it makes frozen bfloat16 layers compute in float32
(`labkit.training.bf16_linear`): PyTorch's own bfloat16 path made one LoRA step of Phi-3.5-mini's shadow 100x slower.

It also ends itself when the process that started it is gone (`LABKIT_PARENT_PID`): a notebook kernel that
dies or is killed must not leave a fine-tune training on, holding the CPU and gigabytes of memory.
"""

import os
import random
import runpy
import sys
import threading
import time

_SEED = 0


def exit_with_parent() -> None:
    """When `LABKIT_PARENT_PID` is set, exit as soon as that parent is gone (polled once a second). Lab 03."""
    parent = os.environ.get("LABKIT_PARENT_PID", "")
    if not parent.isdigit():
        return

    import psutil

    try:
        started = psutil.Process(int(parent)).create_time()
    except psutil.Error:
        os._exit(1)

    def alive() -> bool:   # not os.getppid(): Windows never re-parents an orphan, so its parent id stays
        try:
            process = psutil.Process(int(parent))   # a new process with a reused id, or a dead one, is not it
            return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch():
        while alive():
            time.sleep(1)
        os._exit(1)         # whoever started this fine-tune is gone
    threading.Thread(target=watch, daemon=True).start()


def honour_telemetry_opt_out() -> None:
    """No start-up heartbeat when `OLIVE_DISABLE_TELEMETRY=1`: Olive checks the opt-out after logging it. Lab 03."""
    if os.environ.get("OLIVE_DISABLE_TELEMETRY") != "1":
        return
    from olive.telemetry import telemetry

    telemetry.Telemetry._log_heartbeat = lambda self, metadata=None: None


if __name__ == "__main__":
    import numpy as np
    import torch

    exit_with_parent()
    honour_telemetry_opt_out()
    random.seed(_SEED)
    np.random.seed(_SEED)
    torch.manual_seed(_SEED)
    if "auto-opt" in sys.argv[1:2]:
        from labkit.making import lean

        with lean.patched_builder():
            runpy.run_module("olive", run_name="__main__", alter_sys=True)
    else:
        from labkit.training import bf16_linear

        if "finetune" in sys.argv[1:2] and bf16_linear.needed():
            bf16_linear.install()      # a bfloat16 LoRA on a CPU without bfloat16 instructions
        runpy.run_module("olive", run_name="__main__", alter_sys=True)
