"""Small notebook parameters for the test suite: the same code path as the full course, less work.

Injected by papermill (tests/test_notebooks.py); the committed notebooks keep the course's defaults.
"""

from labkit.workshop.course import COURSE_PARAMETERS

TEST_PARAMETERS = {
    "01_builder_quantization": {"runs": 1, "new_tokens": 16,
                                "int4_variants": [{"algorithm": "rtn", "block_size": 32},
                                                  {"algorithm": "k_quant", "block_size": 64}]},
    "02_vision_export": {"max_new_tokens": 8, "verify_tokens": 6},
    # Half the course's LoRA steps: enough for the answer-rate floors tests/test_notebooks.py asserts (300 steps:
    # city named 96 %, fact 57 %; 200 steps named the city in 62 %, too close to the 60 % floor).
    "03_olive_awq_lora": {"calibration_samples": 32, "finetune_steps": 300, "compare_prompts": 2,
                          "paraphrase_every": 8},
    # The brief adapter's one-sentence style is an easy job: 100 steps gave 100 % one-sentence answers (one run).
    "04_inference": {**COURSE_PARAMETERS["04_inference"], "fallback_steps": 300, "brief_steps": 100,
                     "sentence_every": 16, "bench_runs": 2, "max_new_tokens": 24},
}

# Lab 04 where its answers are not under test (the exercise copy, the chat panel in a browser): short adapters,
# few counted questions. These are the adapters the unit tests train (`olive.finetune("tiny", steps=20)`, its
# export, and a 20-step brief adapter in tests/test_generate.py), so the whole suite trains each of them once.
QUICK_ADAPTERS = {"fallback_steps": 20, "brief_steps": 20, "sentence_every": 64}
