"""`make bench-recipes`: lab 03's full-size recipe on the course model, one change at a time (labkit.recipes)."""

import ast
import json
import subprocess
import sys

from parameters import TEST_PARAMETERS

from labkit import paths, recipes


def _lab03_defaults() -> dict:
    notebook = json.loads((paths.NOTEBOOKS / "03_olive_awq_lora.ipynb").read_text())
    cell = next("".join(c["source"]) for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell).body}


def test_the_rows_go_from_lab03s_default_to_its_full_size_recipe():
    """The bench measures the lab's own recipes: its defaults first, its full_size_recipe last."""
    lab = _lab03_defaults()
    first, *_, last = recipes.RECIPES.values()
    assert first == {key: lab[key] for key in first}
    full = lab["full_size_recipe"]
    assert {key: last[key] for key in ("calibration_samples", "awq_grid", "training_dtype", "finetune_steps",
                                      "batch_size")} == {key: full[key] for key in last if key != "lora_layers"}
    assert last["lora_layers"] / 4 == full["lora_layers"] / 32     # the same share of the tiny model's 4 layers
    changed = [sum(a[k] != b[k] for k in a) for a, b in zip(recipes.RECIPES.values(),
                                                             list(recipes.RECIPES.values())[1:])]
    assert changed == [3, 1, 2], "each row changes one setting (the first change: dtype and AWQ's search)"


def test_the_quick_bench_judges_the_adapter_the_suites_course_trained(course_run, tmp_path):
    """`--quick` is lab 03 with the suite's settings: every step of it is the session course's own, from the cache."""
    course_run.lab("03_olive_awq_lora")
    out = tmp_path / "recipes.json"
    done = subprocess.run([sys.executable, "-m", "labkit", "bench-recipes", "--quick", "--every", "112",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    (name, row), = result["rows"].items()
    assert row["recipe"] == recipes.QUICK[name] and row["cached"], "the course's lab 03 trained this adapter"
    assert {key: value for key, value in row["recipe"].items() if key in TEST_PARAMETERS["03_olive_awq_lora"]} == \
        {key: value for key, value in TEST_PARAMETERS["03_olive_awq_lora"].items() if key in row["recipe"]}
    assert row["travel adapter"]["questions"] == row["base"]["questions"] == 4 == result["questions"]
    assert all(0 <= row[who][rate] <= 1 for who in ("base", "travel adapter") for rate in ("city_named", "fact_stated"))
    assert f"| {name} | {row['travel adapter']['city_named']:.0%} |" in done.stdout
    assert "+0, +0 points" in done.stdout          # the first row is the reference of the others
    assert "answering as" not in done.stdout + done.stderr     # one line per recipe, no progress bars
