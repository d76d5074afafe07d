"""The laptop profile, whole: all six labs on 1-layer shadows of Phi-3.5, as `make laptop-sheet` runs them at full size.

`LABKIT_SHADOWS=1` resolves the Phi-3.5 hub ids to random-weight shadows and `LABKIT_SHADOW_LAYERS=1` makes them one
decoder (and one CLIP) layer deep, at the real width and vocabulary: every path the laptop profile alone takes
(lab 01's INT4 of Phi-3.5-mini, lab 02's single image prompt, lab 03's full-size training in bfloat16 through
Olive as `make laptop-training` runs it, lab 04 on the model it made, the per-lab memory in the report) runs in the
suite. It runs in the background (tests/conftest.py), as `make laptop-sheet` runs it: inside its 16 GB memory cgroup
where the suite runs as root, each lab up to its "Your turn" section (the exercises' solutions are the cpu course's).

`make test-laptop` runs these tests (`pytest -m laptop`); `make test` leaves them out (the `laptop` mark) and CI
(`.ci/run`) runs both. Beside the cpu course they cost `make test` about 520 s of CPU on a 2-core AVX2 machine, which
the suite's 15 minutes do not hold; after `make test`, lab 03's tiny-model steps are already in the cache.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from parameters import LAPTOP_QUICK_RECIPE

from labkit import course, models, paths, plan

LABS = [nb.stem for nb in course.notebooks()]
pytestmark = pytest.mark.laptop


@pytest.mark.notebook
def test_every_lab_runs_and_records_the_laptop_profile_on_shadows(laptop_run):
    run_dir, results = laptop_run.run_dir, laptop_run.results
    assert {lab: (results[lab]["profile"], results[lab]["shadows"]) for lab in LABS} == \
        {lab: ("laptop", True) for lab in LABS}
    assert results["course"]["exercises"] is False
    for lab in LABS:   # every executed lab says, once, that the weights are random
        nb = nbformat.read(run_dir / f"{lab}.ipynb", as_version=4)
        said = [out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])]
        assert sum(models.SHADOW_NOTICE in text for text in said) == 1, lab
        # transformers' warning about the published LongRoPE config's fields is noise to an attendee
        assert not any("rope_parameters" in text for text in said), lab
        assert not any(course.SOLUTION_TAG in cell.metadata.get("tags", []) for cell in nb.cells), lab
        assert len(nb.cells) == len(course.without_exercises(course.notebooks()[LABS.index(lab)]).cells) + 1, lab


@pytest.mark.notebook
def test_lab03_trains_the_phi35_shadow_itself_in_bfloat16_and_measures_each_step(laptop_run):
    """full_size_training: AWQ, Olive's LoRA and export of the 1-layer Phi-3.5-mini shadow, with the quick recipe."""
    lab03 = laptop_run.results["03_olive_awq_lora"]
    assert lab03["model"] == models.HUB_IDS["mini"] and lab03["full_size_recipe"] == LAPTOP_QUICK_RECIPE
    assert json.loads((Path(lab03["awq_dir"]) / "config.json").read_text())["dtype"] == "bfloat16"
    assert lab03["awq"] == {"calibration_samples": LAPTOP_QUICK_RECIPE["calibration_samples"],
                            "grid": LAPTOP_QUICK_RECIPE["awq_grid"], "dtype": "bfloat16"}
    tuned = lab03["finetune"]
    assert (tuned["batch_size"], tuned["lora_layers"], tuned["dtype"], tuned["eval_pairs"]) == \
        (1, 1, "bfloat16", LAPTOP_QUICK_RECIPE["eval_pairs"])
    assert len(tuned["train_losses"]) == 1 and tuned["eval_loss_after"] != tuned["eval_loss_before"]
    assert [row["step"] for row in lab03["steps"]] == ["AWQ", "LoRA fine-tune", "ONNX export with adapter"]
    assert all(row["minutes"] >= 0 and row["peak memory GB"] > 0.5 for row in lab03["steps"])
    # The comparison needs an FP32 build: on a laptop it runs on the tiny model, the session course's (cached)
    assert {row["model"].split(" ")[0] for row in lab03["rtn_vs_awq"]} == {"lab", "outliers"}


@pytest.mark.notebook
def test_lab03s_adapter_loads_on_its_int4_phi35_in_a_plain_og_script_and_changes_it(laptop_run):
    onnx_dir = Path(laptop_run.results["03_olive_awq_lora"]["onnx_dir"])
    decoder = json.loads((onnx_dir / "genai_config.json").read_text())["model"]["decoder"]
    assert (decoder["hidden_size"], decoder["num_hidden_layers"]) == (3072, 1)
    done = subprocess.run([sys.executable, str(paths.REPO / "tools" / "check_adapter.py"), str(onnx_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    moved = float(done.stdout.split("logits by up to ")[1].split(";")[0])
    assert moved > 0.01 and "(1 layers, 3072 wide)" in done.stdout


@pytest.mark.notebook
def test_lab04_chats_with_lab03s_phi35_and_trains_its_second_adapter_the_same_way(laptop_run):
    lab03, lab04 = (laptop_run.results[lab] for lab in ("03_olive_awq_lora", "04_inference"))
    assert lab04["chat_model_dir"] == lab04["model_dir"] == lab03["onnx_dir"]
    assert {"travel", "brief"} <= set(lab04["adapters"]) and lab04["first_reply"]["new_tokens"] > 0
    # converted for lab 03's graph, as Olive's export would have written it (no second export of the shadow)
    brief = json.loads((Path(lab04["adapters"]["brief"]).parent / "labkit_adapter.json").read_text())
    assert brief["model_dir"] == str(Path(lab03["onnx_dir"]).resolve())
    settings = json.loads((Path(brief["adapter"]).parent / "finetune_info.json").read_text())["settings"]
    assert (settings["steps"], settings["bs"], settings["dtype"]) == (1, 1, "bfloat16")     # full_size_settings
    assert settings["targets"].count("layers.0.") == 4         # the travel adapter's layers


@pytest.mark.notebook
def test_on_a_laptop_lab04_chats_with_lab01s_int4_when_lab03_trained_the_tiny_model(laptop_run, monkeypatch):
    """lab 03's default on a laptop (the tiny model): lab 04 then chats with lab 01's INT4 Phi-3.5-mini."""
    monkeypatch.setenv("LABKIT_SHADOWS", "1")
    monkeypatch.setenv("LABKIT_SHADOW_LAYERS", "1")
    lab01 = laptop_run.results["01_builder_quantization"]
    travel = Path(laptop_run.results["04_inference"]["model_dir"])
    chat_dir, adapter, which = plan.chat_model("laptop", travel, travel / "adapter_weights.onnx_adapter", "tiny")
    assert chat_dir == Path(lab01["paths"]["int4"]) and adapter is None       # built by lab 01 in this run
    assert "lab 01's INT4 build" in which and "the adapter sections use lab 03's tiny model" in which
    assert set(lab01["builds"]) == {"int4"}          # the quick run builds one (the course: INT4 and INT8)


@pytest.mark.notebook
def test_lab02_asks_one_4_3_photo_and_times_its_first_token(laptop_run):
    results = laptop_run.results
    lab02 = results["02_vision_export"]
    qa = lab02["qa"]
    assert list(qa) == ["int4", "int4, fp32 encoder"]       # the fp32 encoder timed alone: no second image prompt
    assert qa["int4"]["image tokens"] == 1921 and qa["int4"]["first token s"] > 0
    assert set(qa["int4, fp32 encoder"]) == {"vision s"}
    assert lab02["encoder"] == "int8" and [row["image"] for row in lab02["encoders"]["images"]] == ["beach.png"]
    assert "answer tokens agree %" not in lab02["encoders"] and lab02["encoders"]["mean feature error %"] < 5


@pytest.mark.notebook
def test_the_run_sheet_has_every_labs_minutes_and_peak_memory(laptop_run):
    results, sheet = laptop_run.results, laptop_run.sheet
    assert set(results["course"]["peak_rss_bytes"]) == set(LABS)
    assert all(peak > 100e6 for peak in results["course"]["peak_rss_bytes"].values())
    assert sheet["profile"] == "laptop" and sheet["shadows"] is True
    assert sorted(sheet["labs"]) == [lab[:2] for lab in LABS]
    assert all(row["minutes"] >= 0 and row["peak_rss_bytes"] > 0 for row in sheet["labs"].values())
    if laptop_run.limited:   # the recipe's hard limit, read back by the course
        assert sheet["memory_limit_bytes"] == pytest.approx(16e9, abs=2**20)
