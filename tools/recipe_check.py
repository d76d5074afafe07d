"""Lab 03's flow on the tiny course model with other training recipes, judged as lab 03 judges it, side by side.

    python tools/recipe_check.py [--every N] [--out FILE] [--quick]

Does lab 03's full-size recipe (what fits Phi-3.5-mini on a laptop: bfloat16, a smaller AWQ search, a short
fine-tune of the last layers) cost answer quality? On shadows the weights are random, so quality can only be
measured on the tiny model: each recipe below runs AWQ, the LoRA fine-tune and the export on it (all cached), then
asks the paraphrased travel questions with and without the adapter (`labkit.judge`, as lab 03 section 4 does).
The rows change one thing at a time, from lab 03's default recipe to the full-size one. `--quick` runs two tiny
recipes (what the test suite checks); `make recipe-check` runs the real ones and writes docs/measured/recipe-check.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

# lab 03's parameters: its default recipe (the cpu course), then the full-size one a step at a time. LoRA layers are
# a quarter of the model's, as the full-size recipe's 8 of Phi-3.5-mini's 32 (the tiny model has 4).
DEFAULT = {"calibration_samples": 128, "awq_grid": 20, "training_dtype": "float32", "finetune_steps": 600,
           "batch_size": 8, "lora_layers": 0}
RECIPES = {
    "lab 03's default": DEFAULT,
    "bfloat16, AWQ on 16 pairs with a grid of 10": {**DEFAULT, "calibration_samples": 16, "awq_grid": 10,
                                                     "training_dtype": "bfloat16"},
    "... and LoRA on the last quarter of the layers": {**DEFAULT, "calibration_samples": 16, "awq_grid": 10,
                                                      "training_dtype": "bfloat16", "lora_layers": 1},
    "... and 100 steps of 1 block (the full-size recipe)": {"calibration_samples": 16, "awq_grid": 10,
                                                             "training_dtype": "bfloat16", "finetune_steps": 100,
                                                             "batch_size": 1, "lora_layers": 1},
}
QUICK = {"quick default": {**DEFAULT, "calibration_samples": 32, "finetune_steps": 5},
         "quick full-size": {"calibration_samples": 32, "awq_grid": 3, "training_dtype": "bfloat16",
                             "finetune_steps": 5, "batch_size": 1, "lora_layers": 1}}


def run_recipe(recipe: dict, every: int) -> dict:
    """AWQ, fine-tune and export of the tiny model with `recipe`, then lab 03's paraphrase rates."""
    from labkit import awq, data, judge, olive

    started = time.perf_counter()
    awq_dir = awq.quantize("tiny", awq.awq_recipe(32, n_grid=recipe["awq_grid"]),
                           samples=recipe["calibration_samples"], dtype=recipe["training_dtype"])
    tuned = olive.finetune(awq_dir, steps=recipe["finetune_steps"], batch_size=recipe["batch_size"],
                           torch_dtype=recipe["training_dtype"], lora_layers=recipe["lora_layers"] or None,
                           progress=False)
    onnx_dir = olive.export_with_adapter(awq_dir, tuned.adapter)
    _, rates = judge.ask_all(onnx_dir, data.paraphrases(every=every),
                             {"base": None, "travel adapter": olive.adapter_file(onnx_dir)})
    return {"recipe": recipe, "minutes": round((time.perf_counter() - started) / 60, 1),
            **{name: rate.as_dict() for name, rate in rates.items()}}


def table(rows: dict) -> str:
    """The results as a Markdown table (docs/real-size.md shows it)."""
    lines = ["| recipe | city named | fact stated | base: city, fact | questions |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        tuned, base = row["travel adapter"], row["base"]
        lines.append(f"| {name} | {tuned['city_named']:.0%} | {tuned['fact_stated']:.0%} | "
                     f"{base['city_named']:.0%}, {base['fact_stated']:.0%} | {tuned['questions']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=1, help="ask a 1/N sample of the 448 paraphrased questions")
    parser.add_argument("--out", help="write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="two tiny recipes: seconds, for the test suite")
    args = parser.parse_args(argv)
    recipes = QUICK if args.quick else RECIPES
    rows = {}
    for name, recipe in recipes.items():
        rows[name] = run_recipe(recipe, args.every)
        print(f"{name}: {rows[name]['minutes']} min", flush=True)
    print(table(rows))
    if args.out:
        from labkit.core.paths import write_json_atomic

        write_json_atomic(Path(args.out), {"measured_on": time.strftime("%Y-%m-%d"), "every": args.every,
                                           "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
