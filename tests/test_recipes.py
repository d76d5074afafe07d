"""`make bench-recipes`: lab 03's full-size recipe on the course model, one change at a time (labkit.recipes)."""

import json
import subprocess

from helpers import makefile_recipe, notebook_defaults
from parameters import TEST_PARAMETERS

from labkit import data, paths, plan, recipes


def test_the_rows_go_from_lab03s_default_to_its_full_size_recipe():
    """The bench measures the lab's own recipes: its defaults first, its full_size_recipe last."""
    lab = notebook_defaults("03_olive_awq_lora")
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
    command = makefile_recipe("bench-recipes")          # `make bench-recipes`, one row, 4 questions, its own file
    command[command.index("--out") + 1] = str(out)
    done = subprocess.run([*command, "--quick", "--every", "112"], capture_output=True, text=True, timeout=600)
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


def test_the_committed_sheet_measures_these_recipes_and_lab03_and_the_docs_show_it(monkeypatch, tmp_path):
    """docs/measured/recipes.json is `make bench-recipes`' output for today's recipes; lab 03 and the docs read it."""
    sheet = json.loads(plan.RECIPES_SHEET.read_text())
    assert [(name, row["recipe"]) for name, row in sheet["rows"].items()] == list(recipes.RECIPES.items()), \
        "the recipes changed since the sheet was measured: rerun `make bench-recipes`"
    assert sheet["questions"] == len(data.paraphrases()) == 448
    assert recipes.table(sheet["rows"]) in (paths.REPO / "docs" / "real-size.md").read_text()
    default, *_, full = (row["travel adapter"] for row in sheet["rows"].values())
    line = plan.full_size_quality_line()
    assert f"names the city asked in {full['city_named']:.0%} and states the fact in {full['fact_stated']:.0%}" in line
    assert f"lab 03's default recipe: {default['city_named']:.0%} and {default['fact_stated']:.0%}" in line
    monkeypatch.setattr(plan, "RECIPES_SHEET", tmp_path / "absent.json")
    assert "not measured yet (make bench-recipes" in plan.full_size_quality_line()
