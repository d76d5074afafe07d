"""`python -m labkit.training.olive_seeded ARGS` is `python -m olive ARGS` with Python's, NumPy's and torch's random
generators seeded first. Lab 03.

Olive 0.13's `--seed` seeds its search sampler, not training, and peft draws each LoRA A matrix from torch's
global generator before the Hugging Face trainer seeds anything. So two `olive finetune` runs with the same
arguments trained different adapters, and lab 03's answer rates moved by 20 points between identical runs. With
the generators seeded the same command trains the same adapter: attendees, instructors and CI see one result.
"""

import random
import runpy

import numpy as np
import torch

_SEED = 0

if __name__ == "__main__":
    random.seed(_SEED)
    np.random.seed(_SEED)
    torch.manual_seed(_SEED)
    runpy.run_module("olive", run_name="__main__", alter_sys=True)
