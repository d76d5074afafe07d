import json

import pytest
import torch

from labkit import awq, data, models, report


@pytest.fixture(scope="module")
def outlier_dir(tiny_dir):
    return awq.add_outlier_channels(tiny_dir)


def test_outlier_variant_keeps_the_function(tiny_dir, outlier_dir):
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    b = AutoModelForCausalLM.from_pretrained(outlier_dir).eval()
    ids = torch.arange(5, 40)[None]
    with torch.no_grad():
        assert torch.allclose(a(ids).logits, b(ids).logits, atol=1e-3)
    norm = b.model.layers[0].input_layernorm.weight
    assert norm.abs().max() > 10 * a.model.layers[0].input_layernorm.weight.abs().max()


# Lab 03's test settings (tests/parameters.py): the course beside these tests makes this output once for both.
SAMPLES = 32


def test_awq_export_is_a_float_checkpoint_on_the_int4_grid(tiny_dir):
    from transformers import AutoModelForCausalLM

    out = awq.quantize(tiny_dir, group_size=32, samples=SAMPLES)
    info = json.loads((out / "awq_info.json").read_text())
    assert info["quantized_linears"] == 4 * 4, "qkv, o, gate_up and down of 4 layers (lm_head left alone)"
    net = AutoModelForCausalLM.from_pretrained(out)
    weight = net.model.layers[1].mlp.down_proj.weight.detach()
    groups = weight.reshape(weight.shape[0], -1, 32)
    levels = torch.tensor([len(torch.unique(g)) for g in groups.reshape(-1, 32)])
    assert levels.max() <= 16, "every group of 32 holds at most 16 distinct values: INT4, dequantized"
    assert not torch.equal(net.lm_head.weight, torch.zeros_like(net.lm_head.weight))
    assert (out / "tokenizer_config.json").exists()


def test_bad_group_size_fails_before_work(monkeypatch):
    monkeypatch.setattr(models, "resolve_model", lambda *_: pytest.fail("resolved the model first"))
    with pytest.raises(ValueError, match="group_size=48"):
        awq.quantize("tiny", group_size=48)


def test_awq_beats_rtn_where_activations_have_outliers(course_run):
    """Lab 03's comparison in the session's course (compare_with_rtn on the outlier variant, read back from there)."""
    recorded = course_run.lab("03_olive_awq_lora")["rtn_vs_awq"]
    rows = {(row["model"].split(" ")[0], row["method"]): row for row in recorded}
    # Measured on the 4.2M-parameter course model: AWQ's KL is 0.58 of RTN's (make course, one run).
    assert rows["outliers", "awq-int4"]["kl_x1e3"] <= 0.7 * rows["outliers", "rtn-int4"]["kl_x1e3"], rows
    assert rows["outliers", "awq-int4"]["kl_vs_rtn"] <= 0.7


def test_a_recipe_is_checked_and_shown(monkeypatch):
    monkeypatch.setattr(models, "resolve_model", lambda *_: pytest.fail("resolved the model first"))
    with pytest.raises(ValueError, match="one group size; found none"):
        awq.quantize("tiny", [awq.awq_recipe(32)[0]])      # AWQ scales alone quantize nothing
    assert awq.recipe_group_size(awq.awq_recipe(64)) == 64


def test_the_notebooks_recipe_is_the_default_one(tiny_dir):
    """Lab 03 builds its recipe by hand; the same recipe must hit the same cached output."""
    default = awq.quantize(tiny_dir, group_size=32, samples=SAMPLES)
    assert awq.quantize(tiny_dir, awq.awq_recipe(32), samples=SAMPLES) == default


def test_lab03s_oneshot_cell_lands_where_quantize_does(tiny_dir, tmp_path, monkeypatch):
    """Lab 03 runs llmcompressor's oneshot in its own cell between AwqStep's pieces: the folder quantize returns."""
    default = awq.quantize(tiny_dir, group_size=32, samples=SAMPLES)
    step = awq.AwqStep(tiny_dir, awq.awq_recipe(32), samples=SAMPLES)
    assert step.path == default and step.done
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    fresh = awq.AwqStep(tiny_dir, awq.awq_recipe(32), samples=SAMPLES)
    assert not fresh.done
    net, calibration = fresh.calibration_inputs()
    assert len(calibration) == SAMPLES and "input_ids" in calibration.column_names
    with pytest.raises(ValueError, match="no quantized Linear layers"):
        fresh.save(net)                                     # oneshot never ran on it: nothing to store
    assert not fresh.done and not fresh.path.exists()


def test_the_calibration_pairs_are_part_of_the_key(tiny_dir, monkeypatch):
    """Rewritten training data gets its own AWQ run: scales searched on the old pairs are not reused."""
    before = awq.AwqStep(tiny_dir, awq.awq_recipe(32), samples=SAMPLES).path
    original = data.travel("train")

    def edited(index):
        rows = list(original)
        rows[index] = {**rows[index], "response": rows[index]["response"] + " Enjoy it."}
        return lambda split="train": rows

    monkeypatch.setattr(data, "travel", edited(0))
    assert awq.AwqStep(tiny_dir, awq.awq_recipe(32), samples=SAMPLES).path != before
    monkeypatch.setattr(data, "travel", edited(SAMPLES))             # a pair after the calibration pairs
    assert awq.AwqStep(tiny_dir, awq.awq_recipe(32), samples=SAMPLES).path == before


def test_rtn_and_awq_keep_the_report_colours():
    import pandas as pd
    from matplotlib.colors import to_hex
    table = pd.DataFrame({"model": ["lab model"] * 2, "method": ["awq-int4", "rtn-int4"],
                          "kl_x1e3": [1.0, 2.0]}).set_index(["model", "method"])
    legend = awq.plot_rtn_vs_awq(table).axes[0].get_legend()
    colours = {t.get_text(): to_hex(h.get_facecolor()) for h, t in zip(legend.legend_handles, legend.get_texts())}
    assert colours == {"rtn-int4": report.METHOD_COLOURS["rtn"], "awq-int4": report.METHOD_COLOURS["awq"]}


def test_the_comparison_is_measured_once_per_builds_and_texts(tiny_dir, monkeypatch):
    """compare_with_rtn reads its numbers back for the same builds and texts, and measures again for other texts."""
    from labkit import bench

    rows = data.travel("eval")
    first = awq.compare_with_rtn(tiny_dir, group_size=32, eval_rows=rows[:3], samples=SAMPLES, progress=False)
    assert first["awq-int4"]["kl"] > 0 and first["rtn-int4"]["kl"] > 0
    monkeypatch.setattr(bench, "token_log_probs", lambda *_: pytest.fail("measured the same builds and texts again"))
    assert awq.compare_with_rtn(tiny_dir, group_size=32, eval_rows=rows[:3], samples=SAMPLES,
                                progress=False) == first
    with pytest.raises(pytest.fail.Exception, match="measured the same"):
        awq.compare_with_rtn(tiny_dir, group_size=32, eval_rows=rows[3:5], samples=SAMPLES, progress=False)


def test_a_grid_too_small_for_llmcompressor_fails_before_work(monkeypatch):
    monkeypatch.setattr(models, "resolve_model", lambda *_: pytest.fail("resolved the model first"))
    with pytest.raises(ValueError, match="n_grid=2: AWQ's scale search needs at least 3"):
        awq.AwqStep("tiny", awq.awq_recipe(32, n_grid=2))
    with pytest.raises(ValueError, match="dtype='float16'"):
        awq.AwqStep("tiny", dtype="float16")


def test_a_recipe_of_your_own_is_not_sent_to_the_child_process(tiny_dir, monkeypatch):
    """in_child rebuilds labkit's recipe from its settings in the other process: another recipe would be lost."""
    import subprocess

    from llmcompressor.modifiers.transform.awq import AWQModifier
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("started the child process"))
    mine = [AWQModifier(duo_scaling=False, n_grid=5), awq.awq_recipe(32)[1]]
    with pytest.raises(ValueError, match="recipe of your own in this one"):
        awq.quantize(tiny_dir, mine, samples=SAMPLES, in_child=True)


def test_the_child_process_keeps_up_to_1_gib_of_freed_memory(tiny_dir, monkeypatch):
    """Real-size AWQ in bfloat16 turns each weight into a float32 copy (labkit.bf16_linear): glibc keeps them."""
    import subprocess

    from labkit import allocator
    seen = {}

    def fake_run(command, **kwargs):
        seen.update(kwargs["env"])
        return subprocess.CompletedProcess(command, 1)
    monkeypatch.setattr(subprocess, "run", fake_run)
    for name in allocator.KEEP_FREED:            # tests/conftest.py sets them for the whole suite
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="failed in its process"):
        awq.quantize(tiny_dir, samples=SAMPLES, in_child=True, force=True)
    assert {name: seen[name] for name in allocator.KEEP_FREED_BOUNDED} == allocator.KEEP_FREED_BOUNDED
