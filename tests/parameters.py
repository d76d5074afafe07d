"""Small notebook parameters for the test suite: the same code path as the full course, less work.

Injected by papermill (tests/test_notebooks.py); the committed notebooks keep the course's defaults.
"""

from labkit.course import COURSE_PARAMETERS

TEST_PARAMETERS = {
    "01_builder_quantization": {"runs": 1, "new_tokens": 16,
                                "int4_variants": [{"algorithm": "rtn", "block_size": 32},
                                                  {"algorithm": "k_quant", "block_size": 64}]},
    "02_vision_export": {"max_new_tokens": 8, "verify_tokens": 6},
    "03_olive_awq_lora": {"calibration_samples": 32, "finetune_steps": 30, "lora_r": 8, "compare_prompts": 2},
    "04_inference": {**COURSE_PARAMETERS["04_inference"], "fallback_steps": 30, "brief_steps": 30,
                     "bench_runs": 2, "max_new_tokens": 24},
}


