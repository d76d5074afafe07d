"""Small notebook parameters for the test suite: the same code path as the full course, less work.

Injected by papermill (the session's course run in tests/conftest.py, the exercise copies, the browser
test); the committed notebooks keep the course's defaults.
"""

import os

import papermill

from labkit import course

MODELS = os.environ.get("LABKIT_TEST_MODELS", "tiny")   # make test-gpu MODELS=real: the profile's Phi-3.5 models

# The JSON adapter's steps in the suite (the course's: 300). On the course's lab 03 model, 28 paraphrased questions,
# greedy with guidance (2026-12-04, one run each): 100 steps put the city asked in `city` in 61 %, 200 steps in 96 %.
JSON_STEPS = 200

TEST_PARAMETERS = {
    "01_builder_quantization": {"runs": 1, "new_tokens": 16,
                                "int4_variants": [{"algorithm": "rtn", "block_size": 32},
                                                  {"algorithm": "k_quant", "block_size": 32}]},
    "02_vision_export": {"max_new_tokens": 8, "verify_tokens": 6},
    # A fifth of the course's LoRA steps: enough for the floors tests/test_notebooks.py asserts. Measured with every
    # travel pair and the two-turn chats (3,953 pairs), lab 03's learning rate 6e-3, AWQ on 32 pairs, on these
    # 56 paraphrased questions and 56 two-turn chats, judged by whole words (the suite's own run, 2026-12-02): 120
    # steps named the city in 100 % (base model 36 %), stated the fact in 68 % (base 11 %), kept the city in 91 % of
    # follow-ups.
    "03_olive_awq_lora": {"calibration_samples": 32, "finetune_steps": 120, "compare_prompts": 2,
                          "paraphrase_every": 8},
    # The brief adapter's one-sentence style is an easy job: 30 and 50 steps each gave 100 % one-sentence answers on
    # 28 questions (one run each, 2026-12-02); most of a short fine-tune is Olive's start and the export.
    # Lab 03's flow with lab 03's test settings: where lab 04 runs without lab 03 it lands on lab 03's cached outputs.
    "04_inference": {**course.COURSE_PARAMETERS["04_inference"], "fallback_steps": 120, "fallback_samples": 32,
                     "brief_steps": 40, "sentence_every": 16, "bench_runs": 2, "max_new_tokens": 24,
                     "followup_every": 4, "json_steps": JSON_STEPS, "json_every": 16, "city_every": 4},
}

# Lab 04 run again only to show its cells work (the blank copy, the browser's chat panel): a handful of questions,
# since the session's course run measures the rates.
LAB04_FEW_QUESTIONS = {"followup_every": 56, "sentence_every": 112, "json_every": 112, "city_every": 16}


def notebook_parameters(notebook) -> dict:
    """The test parameters of one notebook, with the tiny models unless `MODELS=real`."""
    params = dict(TEST_PARAMETERS.get(notebook.stem, {}))
    if MODELS == "tiny" and "model" in papermill.inspect_notebook(str(notebook)):
        params["model"] = "tiny-vision" if notebook.stem == "02_vision_export" else "tiny"
    return params


def course_parameters() -> dict[str, dict]:
    """`run_course`'s parameters for the whole course (test sizes, tiny models)."""
    return {nb.stem: notebook_parameters(nb) for nb in course.notebooks()}

# The laptop profile's quick run (tests/test_laptop_course.py): 1-layer shadows of Phi-3.5, every lab, the fewest
# tokens and timed runs. Lab 03 trains the 1-layer Phi-3.5-mini shadow itself (full_size_training, the real-size
# path in bfloat16 through Olive) with the least work that still runs every step (AWQ on 4 pairs, 3 scales per
# projection, one LoRA step: random weights learn nothing worth more); its RTN-vs-AWQ comparison on the tiny model
# takes the session course's 32 pairs, so it is the session course's, cached. Lab 04 then chats with that model.
LAPTOP_QUICK_RECIPE = {"calibration_samples": 4, "awq_grid": 3, "finetune_steps": 1, "batch_size": 1,
                       "lora_layers": 1, "training_dtype": "bfloat16", "eval_pairs": 2, "paraphrase_every": 112}
LAPTOP_QUICK_PARAMETERS = {
    "01_builder_quantization": {"runs": 1, "new_tokens": 8, "precisions": ["int4"]},   # INT8: the cpu course's
    "02_vision_export": {"max_new_tokens": 4},
    "03_olive_awq_lora": {"full_size_training": True, "full_size_recipe": LAPTOP_QUICK_RECIPE, "compare_prompts": 1,
                          "calibration_samples": TEST_PARAMETERS["03_olive_awq_lora"]["calibration_samples"]},
    "04_inference": {**TEST_PARAMETERS["04_inference"], "bench_runs": 1, "max_new_tokens": 8,
                     "full_size_settings": {"brief_steps": 1, "followup_every": 112, "sentence_every": 224,
                                            "json_steps": 0, "json_every": 224, "city_every": 32,
                                            "json_sampling": {}}},
}
