"""What lab 03's full-size recipe costs in answer quality, measured on the course model. `make bench-recipes`.

Lab 03 trains Phi-3.5-mini on a laptop with a recipe that fits 16 GB and 45 minutes (`full_size_recipe`: bfloat16,
a smaller AWQ search, LoRA on the last quarter of the layers, 100 steps of one block). On a shadow the weights are
random, so what that recipe does to the answers can only be measured on a model that has learned something: the
tiny course model. Each row below runs lab 03's flow on it (AWQ, `olive finetune`, `olive auto-opt` with the
adapter; all cached) and asks the paraphrased travel questions with and without the adapter, as lab 03's section 4
does (`labkit.judge`). The rows go from lab 03's default recipe to the full-size one, one change at a time, so each
change's cost is its own row.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core import data, paths
from ..measuring import judge
from . import awq, olive

# Lab 03's default recipe (its parameters cell, the cpu course). `lora_layers` 0: LoRA on every layer.
DEFAULT = {"calibration_samples": 128, "awq_grid": 20, "training_dtype": "float32", "finetune_steps": 600,
           "batch_size": 8, "lora_layers": 0}
# Lab 03's full_size_recipe (its parameters cell; a test keeps the two equal), for Phi-3.5-mini.
FULL_SIZE_RECIPE = {"calibration_samples": 16, "awq_grid": 10, "finetune_steps": 100, "batch_size": 1,
                    "lora_layers": 8, "training_dtype": "bfloat16", "eval_pairs": 32, "paraphrase_every": 16}
# On the tiny model, one setting at a time. Its LoRA layers are the last 8 of Phi-3.5-mini's 32: a quarter, 1 of the
# tiny model's 4.
_FULL_SIZE = {key: FULL_SIZE_RECIPE[key] for key in ("calibration_samples", "awq_grid", "training_dtype")}
RECIPES = {
    "lab 03's default (float32, AWQ 128 pairs / grid 20, all layers, 600 x 8 blocks)": DEFAULT,
    "bfloat16, AWQ on 16 pairs with a grid of 10": {**DEFAULT, **_FULL_SIZE},
    "... and LoRA on the last quarter of the layers": {**DEFAULT, **_FULL_SIZE, "lora_layers": 1},
    "... and 100 steps of 1 block: the full-size recipe": {
        **DEFAULT, **_FULL_SIZE, "lora_layers": 1,
        **{key: FULL_SIZE_RECIPE[key] for key in ("finetune_steps", "batch_size")}},
}
# `--quick`: lab 03 as the test suite runs it (a fifth of the steps, AWQ on 32 pairs). In `make test` every step of
# it is the session course's, cached, so the bench's own work is the judging.
QUICK = {"lab 03's default at a fifth of its steps, AWQ on 32 pairs": {**DEFAULT, "calibration_samples": 32,
                                                                      "finetune_steps": 120}}


def run_recipe(recipe: dict, every: int = 1, model: str = "tiny") -> dict:
    """Lab 03's flow on `model` with `recipe`, then the adapter's and the base model's paraphrase rates."""
    started = time.perf_counter()
    awq_dir = awq.quantize(model, awq.awq_recipe(32, n_grid=recipe["awq_grid"]),
                           samples=recipe["calibration_samples"], dtype=recipe["training_dtype"])
    tuned = olive.finetune(awq_dir, steps=recipe["finetune_steps"], batch_size=recipe["batch_size"],
                           torch_dtype=recipe["training_dtype"], lora_layers=recipe["lora_layers"] or None,
                           progress=False)
    onnx_dir = olive.export_with_adapter(awq_dir, tuned.adapter)
    _, rates = judge.ask_all(onnx_dir, data.paraphrases(every=every),
                             {"base": None, "travel adapter": olive.adapter_file(onnx_dir)}, progress=False)
    return {"recipe": recipe, "minutes": round((time.perf_counter() - started) / 60, 2),
            "finetune_seconds": round(tuned.seconds, 1), "cached": tuned.cached,
            **{name: rate.as_dict() for name, rate in rates.items()}}


def table(rows: dict) -> str:
    """The rows as a Markdown table: adapter and base rates, and each row's change against the first. Lab 03."""
    first = next(iter(rows.values()))["travel adapter"]
    lines = ["| recipe | city named | fact stated | vs first row (city, fact) | base model: city, fact |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        tuned, base = row["travel adapter"], row["base"]
        change = (f"{100 * (tuned['city_named'] - first['city_named']):+.0f}, "
                  f"{100 * (tuned['fact_stated'] - first['fact_stated']):+.0f} points")
        lines.append(f"| {name} | {tuned['city_named']:.0%} | {tuned['fact_stated']:.0%} | {change} | "
                     f"{base['city_named']:.0%}, {base['fact_stated']:.0%} |")
    return "\n".join(lines)


def run_bench_recipes(quick: bool = False, every: int = 1, out: Path | None = None) -> dict:
    """Every recipe in turn (`quick`: the one QUICK row), a line per recipe, the table; written to `out`. Lab 03."""
    rows = {}
    for name, recipe in (QUICK if quick else RECIPES).items():
        rows[name] = run_recipe(recipe, every)
        tuned = rows[name]["travel adapter"]
        print(f"{name}: {rows[name]['minutes']:.1f} min, the adapter names the city in {tuned['city_named']:.0%}",
              flush=True)
    result = {"measured_on": time.strftime("%Y-%m-%d"), "model": "tiny",
              "questions": rows[name]["travel adapter"]["questions"], "rows": rows}
    print(table(rows))
    if out is not None:
        paths.write_json_atomic(Path(out), result)
        print(f"written: {out}")
    return result
