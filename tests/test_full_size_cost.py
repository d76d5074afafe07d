"""`make bench-training`: lab 03's full-size AWQ and LoRA on this CPU, from 1- and 2-layer shadows
(labkit.full_size_cost), and what lab 00 and lab 03 print from it."""

import json

import pytest
from helpers import makefile_recipe, notebook_defaults

from labkit import full_size_cost, plan

# unit costs as `measure` writes them (JSON: string keys), round numbers to check the extrapolation by hand
MEASURED = {"measured_on": "2026-12-05", "quick": False, "dtype": "bfloat16", "cores": 2, "bf16_instructions": [],
            "bf16_linear": True,
            "awq": {"calibration_samples": 16, "awq_grid": 10, "seconds": {"1": 40.0, "2": 70.0}, "per_layer_s": 30.0},
            "lora": {"steps": 3, "step_s": {}, "forward_per_layer_s": 0.5, "backward_per_layer_s": 0.25,
                     "rest_s": 1.0}}


def test_the_bench_measures_lab03s_own_full_size_recipe():
    assert full_size_cost.FULL_SIZE_RECIPE == notebook_defaults("03_olive_awq_lora")["full_size_recipe"]
    assert makefile_recipe("bench-training")[-2:] == ["labkit", "bench-training"]
    assert "--quick" in makefile_recipe("bench-training-quick")


def test_the_estimate_extrapolates_per_layer_to_32_layers():
    recipe = dict(full_size_cost.FULL_SIZE_RECIPE)                 # 16 pairs, grid 10, 100 steps of 1 block, last 8
    guess = full_size_cost.estimate(MEASURED, recipe)
    assert guess["awq_minutes"] == pytest.approx((10 + 32 * 30) / 60)          # the 1-layer run's rest + 32 layers
    assert guess["step_seconds"] == pytest.approx(1 + 32 * 0.5 + 8 * 0.25)     # every forward, 8 backwards
    assert guess["lora_minutes"] == pytest.approx(100 * 19 / 60)
    twice = full_size_cost.estimate(MEASURED, {**recipe, "awq_grid": 20, "lora_layers": 0, "batch_size": 2})
    assert twice["awq_minutes"] == pytest.approx((10 + 32 * 60) / 60)          # grid points scale AWQ's layers
    assert twice["step_seconds"] == pytest.approx(1 + 32 * 0.75) and twice["lora_minutes"] == pytest.approx(
        2 * 100 * 25 / 60)


def test_lab00_and_lab03_use_this_cpus_bench_or_warn_when_the_sheet_had_bfloat16(monkeypatch, tmp_path):
    sheet = json.loads(plan.LAPTOP_TRAINING_SHEET.read_text())
    recipe = sheet["training"]["recipe"]
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))
    monkeypatch.setenv("LABKIT_BF16_LINEAR", "float32")           # a CPU without bfloat16 instructions
    minutes, line = plan.this_cpu_training(recipe, {**sheet, "bf16_instructions": ["avx512_bf16"]})
    assert minutes is None and "make bench-training" in line and "this one has none" in line
    assert line in plan.full_size_training_lines(recipe)
    monkeypatch.setenv("LABKIT_BF16_LINEAR", "native")
    assert plan.this_cpu_training(recipe, sheet) == (None, "")
    (tmp_path / "bench-training.json").write_text(json.dumps(MEASURED))
    minutes, line = plan.this_cpu_training(recipe, sheet)
    guess = full_size_cost.estimate(MEASURED, recipe)
    assert minutes == pytest.approx(guess["awq_minutes"] + guess["lora_minutes"])
    assert f"AWQ ≈ {guess['awq_minutes']:.0f} min, LoRA ≈ {guess['lora_minutes']:.0f} min" in line
    rows = [r for r in plan.lab_plan("laptop") if r["what"].startswith(plan.OPTIONAL) and r["lab"] == "03"]
    assert line in rows[0]["basis"]
    sheet_minutes = sheet["labs"]["03"]["minutes"] + sheet["training"]["steps"][-1]["minutes"]   # + the export
    assert rows[0]["minutes"] == pytest.approx(sheet_minutes + minutes, abs=0.1)


@pytest.mark.laptop
def test_the_quick_bench_runs_every_piece_on_shadows(tmp_path):
    """`make bench-training-quick`: AWQ on the 1- and 2-layer shadows, three one-step Olive fine-tunes."""
    import subprocess

    out = tmp_path / "bench-training.json"
    command = makefile_recipe("bench-training-quick")
    command[command.index("--out") + 1] = str(out)
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    measured = json.loads(out.read_text())
    assert measured["quick"] and measured["awq"]["awq_grid"] == full_size_cost.QUICK["awq_grid"]
    assert set(measured["awq"]["seconds"]) == {"1", "2"} and all(s > 0 for s in measured["awq"]["seconds"].values())
    assert len(measured["lora"]["step_s"]) == 3 and all(s > 0 for s in measured["lora"]["step_s"].values())
    assert "full_size_recipe on Phi-3.5-mini (32 layers)" in done.stdout and "LoRA ≈" in done.stdout
