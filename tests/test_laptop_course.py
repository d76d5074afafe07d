"""The laptop profile, whole: all six labs on 1-layer shadows of Phi-3.5, as `make laptop-sheet` runs them at full size.

`LABKIT_SHADOWS=1` resolves the Phi-3.5 hub ids to random-weight shadows and `LABKIT_SHADOW_LAYERS=1` makes them one
decoder (and one CLIP) layer deep, at the real width and vocabulary: every path the laptop profile alone takes
(lab 01's INT4 of Phi-3.5-mini, lab 02's single image prompt, lab 04's two models, the per-lab memory in
the report) runs in the suite. It runs in the background beside the session's cpu course (tests/conftest.py), as
`make laptop-sheet` runs it: inside its 16 GB memory cgroup where the suite runs as root.
"""

import json
from pathlib import Path

import nbformat
import pytest

from labkit import course, models

LABS = [nb.stem for nb in course.notebooks()]


@pytest.mark.notebook
def test_every_lab_runs_and_records_the_laptop_profile_on_shadows(laptop_run):
    run_dir, results = laptop_run.run_dir, laptop_run.results
    assert {lab: (results[lab]["profile"], results[lab]["shadows"]) for lab in LABS} == \
        {lab: ("laptop", True) for lab in LABS}
    for lab in LABS:   # every executed lab says, once, that the weights are random
        nb = nbformat.read(run_dir / f"{lab}.ipynb", as_version=4)
        said = [out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])]
        assert sum(models.SHADOW_NOTICE in text for text in said) == 1, lab


@pytest.mark.notebook
def test_lab04_chats_with_lab01s_int4_phi35_and_keeps_the_adapters_on_lab03s_model(laptop_run):
    results = laptop_run.results
    lab01, lab03, lab04 = (results[lab] for lab in ("01_builder_quantization", "03_olive_awq_lora", "04_inference"))
    assert lab04["chat_model_dir"] == lab01["paths"]["int4"]
    decoder = json.loads((Path(lab04["chat_model_dir"]) / "genai_config.json").read_text())["model"]["decoder"]
    assert (decoder["hidden_size"], decoder["num_hidden_layers"]) == (3072, 1)
    assert lab03["model"] == "tiny" and lab04["model_dir"] == lab03["onnx_dir"]
    assert {"travel", "brief"} <= set(lab04["adapters"]) and lab04["first_reply"]["new_tokens"] > 0
    assert set(lab01["builds"]) == {"int4"}          # the quick run builds one (the course: INT4 and INT8)


@pytest.mark.notebook
def test_lab02_asks_one_4_3_photo_and_times_its_first_token(laptop_run):
    results = laptop_run.results
    qa = results["02_vision_export"]["qa"]
    assert list(qa) == ["int4"]
    assert qa["int4"]["image tokens"] == 1921 and qa["int4"]["first token s"] > 0


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
