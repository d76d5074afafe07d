"""The "Your turn" exercises' checks (labkit.checks): ✓ on a right answer, a hint (never the answer) otherwise."""

from labkit import build, checks


# ------------------------------------------------------------------ the checks themselves
def test_checks_say_yes_to_right_answers_and_hint_without_the_answer(tiny_dir, capsys):
    from labkit import models
    right = models.describe(tiny_dir)["parameters"]
    assert checks.parameter_count(right, tiny_dir)
    wrong = checks.parameter_count(right - 1, tiny_dir)
    assert not wrong and str(right) not in wrong.message.replace(",", "") and "qkv_proj" in wrong.message
    assert checks.uniform_perplexity(2048.0, 2048) and not checks.uniform_perplexity(1.0, 2048)
    out = capsys.readouterr().out
    assert out.count("✓ ") == 2 and out.count("✗ ") == 2


def test_the_int8_prediction_check_hints_at_the_embedding_without_the_answer(capsys):
    import pandas as pd
    table = pd.DataFrame({"size_mb": {"int8": 39.5, "fp32": 63.4}})
    assert checks.int8_ratio(0.59, table)
    wrong = checks.int8_ratio((1 + 4 / 32) / 4, table)           # the weights alone, embedding forgotten
    assert not wrong and "embedding" in wrong.message and "0.62" not in wrong.message


def test_image_token_check_counts_with_the_processor(tmp_path):
    from PIL import Image

    from labkit import vision_export
    folder = vision_export.export("tiny-vision", "int4", progress=False)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1000, 500)).save(photo)
    truth = checks.processor_image_tokens(folder, [photo])
    assert truth == 2353, "1000 x 500 -> 5 x 3 crops of 336 px"
    assert checks.image_tokens(truth, folder, [photo]) and not checks.image_tokens(truth + 1, folder, [photo])


def test_loop_and_budget_checks(tiny_builds):
    folder = tiny_builds["int4"].path
    assert not checks.loop_stopped(folder, "The old baker", {}), "greedy loops on this prompt"
    assert checks.loop_stopped(folder, "The old baker", {"repetition_penalty": 1.3})
    assert not checks.loop_stopped(folder, "The old baker", {"temperature": -1})
    from labkit import generate, inputs
    _, tokenizer = generate.load(str(folder))
    budget = inputs.context_length(folder) - len(tokenizer.encode(generate.chat_prompt(tokenizer, "Hi")))
    assert checks.new_token_budget(budget, folder, "Hi") and not checks.new_token_budget(budget + 1, folder, "Hi")


def test_block16_check_looks_at_the_graph(tiny_builds):
    b16 = build.build("tiny", "int4", block_size=16, progress=False)
    size = b16.size_bytes / 1e6
    assert checks.block16_build(b16.path, tiny_builds["int4"].path, size)
    assert not checks.block16_build(tiny_builds["int4"].path, tiny_builds["int4"].path, size), "a block-32 build"


def test_own_adapter_needs_twenty_pairs(tiny_dir):
    result = checks.own_adapter(tiny_dir, "unused", [{"prompt": "a", "response": "b"}] * 5)
    assert not result and "at least 20" in result.message
