"""What lab 03's full-size flow costs on this CPU, before an attendee starts it. `make bench-training`.

`make laptop-training` measures the whole flow once (≈ 26 minutes on a 2-core CPU with bfloat16 instructions), and
lab 00 and lab 03 show that sheet. How long AWQ and the LoRA steps take depends on the CPU more than anything else:
without bfloat16 instructions every product runs in float32 (`labkit.training.bf16_linear`), several times slower.
This bench measures the two unit costs on 1- and 2-layer full-width Phi-3.5-mini shadows, in minutes instead of hours,
and extrapolates them to the 32 layers of the real model, as `make bench-scale-quick` does for builds:

- AWQ (llmcompressor `oneshot` in a process of its own, as lab 03 runs it): seconds per decoder layer, from the
  difference between the 2- and the 1-layer shadow; its cost grows with calibration pairs × grid points.
- One LoRA step (`olive finetune`, the trainer's own `train_runtime` over its steps): a decoder layer's forward pass,
  a LoRA layer's backward pass and the rest (embeddings, LM head, optimizer), from three runs: 1 layer with LoRA,
  2 layers with LoRA on the last, 2 layers with LoRA on both. A step of the real model with LoRA on the last K of
  32 layers is then the rest + 32 forwards + K backwards.

Lab 00 and lab 03 print this machine's estimate (`plan.full_size_training_lines`) when `runs/bench-training.json`
exists. The ONNX export is not measured here: the model builder's INT4 quantization does not use bfloat16.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..core import paths, sizing
from ..making import shadow
from . import awq, bf16_linear, olive
from .recipes import FULL_SIZE_RECIPE

# What the bench runs: the full-size recipe's AWQ search and dtype, a few LoRA steps. `--quick` (make
# bench-training-quick, a test runs it): the least that still runs every piece.
BENCH = {"calibration_samples": FULL_SIZE_RECIPE["calibration_samples"], "awq_grid": FULL_SIZE_RECIPE["awq_grid"],
         "lora_steps": 10}
QUICK = {"calibration_samples": 2, "awq_grid": 3, "lora_steps": 1}
LAYERS = 32                     # Phi-3.5-mini's decoder layers
_RUNTIME = re.compile(r"'train_runtime': '?([0-9.]+)")


def default_out() -> Path:
    """`runs/bench-training.json`, which lab 00's and lab 03's estimate read. Lab 03."""
    return paths.runs_root() / "bench-training.json"


def measure(quick: bool = False, dtype: str = FULL_SIZE_RECIPE["training_dtype"]) -> dict:
    """AWQ's seconds per layer and a LoRA step's parts on 1- and 2-layer shadows, a line per run. Lab 03."""
    settings = QUICK if quick else BENCH
    pairs, grid, steps = settings["calibration_samples"], settings["awq_grid"], settings["lora_steps"]
    awq_seconds, awq_dirs = {}, {}
    for layers in (1, 2):
        model = shadow.create_shadow("phi-3.5-mini", layers, progress=False)
        awq_dirs[layers] = awq.quantize(model, awq.awq_recipe(32, n_grid=grid), samples=pairs, dtype=dtype,
                                        in_child=True, force=True)
        awq_seconds[str(layers)] = paths.read_json(awq_dirs[layers] / "awq_info.json", "rerun the bench")["seconds"]
        print(f"AWQ, {layers}-layer shadow, {pairs} pairs, grid {grid}: {awq_seconds[str(layers)]:.0f} s", flush=True)
    step = {}
    for layers, lora in ((1, 1), (2, 1), (2, 2)):
        tuned = olive.finetune(awq_dirs[layers], steps=steps, batch_size=1, torch_dtype=dtype, lora_layers=lora,
                               logging_steps=steps, force=True, progress=False)
        found = _RUNTIME.findall(Path(tuned.log).read_text(encoding="utf-8"))
        if not found:
            raise olive.OliveStepError(f"no train_runtime in {tuned.log}: Olive's trainer did not report its time.")
        step[f"{layers} layers, LoRA on {lora}"] = float(found[-1]) / steps
        print(f"LoRA step, {layers}-layer shadow, LoRA on {lora}: {float(found[-1]) / steps:.1f} s", flush=True)
    t11, t21, t22 = step.values()
    forward, backward = max(t21 - t11, 0.0), max(t22 - t21, 0.0)
    return {"measured_on": time.strftime("%Y-%m-%d"), "quick": quick, "dtype": dtype,
            "cores": sizing.machine()["cores"], "bf16_linear": bf16_linear.needed(),
            "bf16_instructions": sorted(bf16_linear.BF16_FLAGS & sizing.cpu_flags()),
            "awq": {"calibration_samples": pairs, "awq_grid": grid, "seconds": awq_seconds,
                    "per_layer_s": max(awq_seconds["2"] - awq_seconds["1"], 0.0)},
            "lora": {"steps": steps, "step_s": step, "forward_per_layer_s": forward,
                     "backward_per_layer_s": backward, "rest_s": max(t11 - forward - backward, 0.0)}}


def estimate(measured: dict, recipe: dict, layers: int = LAYERS) -> dict:
    """Minutes of AWQ and of the LoRA fine-tune for `recipe` on a `layers`-layer model, from `measure`'s unit costs.

    AWQ's per-layer cost is scaled by the recipe's calibration pairs × grid points against the bench's. Lab 03."""
    bench = measured["awq"]
    scale = (recipe["calibration_samples"] * recipe["awq_grid"]) / (bench["calibration_samples"] * bench["awq_grid"])
    awq_fixed = max(bench["seconds"]["1"] - bench["per_layer_s"], 0.0)     # loading, calibration text, saving
    awq_s = awq_fixed + layers * bench["per_layer_s"] * scale
    lora = measured["lora"]
    trained = recipe["lora_layers"] or layers
    step_s = lora["rest_s"] + layers * lora["forward_per_layer_s"] + trained * lora["backward_per_layer_s"]
    lora_s = step_s * recipe["batch_size"] * recipe["finetune_steps"]
    return {"awq_minutes": awq_s / 60, "lora_minutes": lora_s / 60, "step_seconds": step_s}


def run_bench_training(quick: bool = False, out: Path | None = None) -> dict:
    """Measure, print the full-size recipe's estimate, write `out` (default runs/bench-training.json). Lab 03."""
    measured = measure(quick)
    guess = estimate(measured, FULL_SIZE_RECIPE)
    cpu = ("bfloat16 instructions: " + ", ".join(measured["bf16_instructions"]) if measured["bf16_instructions"]
           else "no bfloat16 instructions: frozen layers compute in float32")
    print(f"lab 03's full_size_recipe on Phi-3.5-mini ({LAYERS} layers) on this CPU ({measured['cores']} cores, "
          f"{cpu}), extrapolated: AWQ ≈ {guess['awq_minutes']:.0f} min, LoRA ≈ {guess['lora_minutes']:.0f} min "
          f"({guess['step_seconds']:.1f} s a step), plus the export")
    out = Path(out) if out else default_out()
    paths.write_json_atomic(out, measured)
    print(f"written: {out}")
    return measured
