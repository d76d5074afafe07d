"""Execute every notebook with papermill (small parameters, same code path as the course).

Executed copies are kept under runs/pytest-<timestamp>/ as artifacts. With LABKIT_PROFILE=gpu
(`make test-gpu`) the notebooks run on the CUDA EP with the tiny models.
"""

import json
import os
import time

import papermill
import pytest

from conftest import has_cuda
from parameters import TEST_PARAMETERS
from labkit import course, paths

PROFILE = os.environ.get("LABKIT_PROFILE", "cpu")
MODELS = os.environ.get("LABKIT_TEST_MODELS", "tiny")   # make test-gpu MODELS=real
RUN = paths.runs_root() / f"pytest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

# What each lab must have written to results.json.
EXPECTED = {
    "00_environment_check": lambda r: r["environment_ok"] and r["model"].get("heldout_perplexity", 0) < 50
    and ("gpu" in r and (r["gpu"]["ok"] or PROFILE == "cpu")),
    "01_builder_quantization": lambda r: {"fp32", "int4", "int4-rtn-b32", "int4-k_quant-b64"} <= set(r["builds"])
    and all(row["perplexity"] > 1 and row["decode_tok_s"] > 0 for row in r["builds"].values()),
    "02_vision_export": lambda r: r["verify"]["greedy_tokens_match"] and r["verify"]["vision_max_abs_diff"] < 1e-4
    and set(r["exports"]) == {"fp32", "int4"} and r["two_images_tokens"] > 1921,
    "03_olive_awq_lora": lambda r: r["finetune"]["eval_loss_after"] < r["finetune"]["eval_loss_before"]
    and r["onnx_eval_perplexity"]["adapter"] < r["onnx_eval_perplexity"]["base"]
    and len(r["rtn_vs_awq"]) == 4 and r["adapter"].endswith(".onnx_adapter"),
    "05_results": lambda r: r["variants"] >= 11 and "int4 size / fp32" in r["headline"],
    "04_inference": lambda r: {"travel", "brief"} <= set(r["adapters"]) and r["overhead"]["labkit_decode_tok_s"] > 0
    and len(r["search_options"]) == 8 and r["first_reply"]["new_tokens"] > 0,
}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", course.notebooks(), ids=lambda p: p.stem)
def test_notebook_runs(notebook, monkeypatch):
    # Hermetic: a notebook must not pick up outputs of earlier runs (lab 04 looks for lab 03's).
    monkeypatch.setenv("LABKIT_RUNS", str(RUN))
    if PROFILE == "gpu" and not has_cuda():
        pytest.skip("LABKIT_PROFILE=gpu needs a CUDA GPU: run `make test-gpu` (it probes the GPU first)")
    run_dir = RUN / notebook.stem   # each notebook in its own folder: runs never clobber each other
    if notebook.stem == "05_results":
        # The report reads what the labs before it recorded, as in one `make course` run.
        merged = {}
        for earlier in sorted(RUN.glob("0[0-4]_*/results.json")):   # labs 00-04
            merged.update(json.loads(earlier.read_text()))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps(merged))
    params = dict(TEST_PARAMETERS.get(notebook.stem, {}))
    # Tiny models on every profile (the gpu profile runs them on CUDA), unless `make test-gpu MODELS=real`
    # asks for the profile's own Phi-3.5 models (from the runner's Hugging Face cache).
    if "model" in papermill.inspect_notebook(str(notebook)) and MODELS == "tiny":
        params["model"] = "tiny-vision" if notebook.stem == "02_vision_export" else "tiny"
    course.run_notebook(notebook, run_dir, params, profile=PROFILE)
    results = json.loads((run_dir / "results.json").read_text())
    assert notebook.stem in results
    check = EXPECTED.get(notebook.stem)
    assert check is None or check(results[notebook.stem]), results[notebook.stem]
