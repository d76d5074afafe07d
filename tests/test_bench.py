import json
import math

import pytest

from labkit import bench, data, models


def test_agreement_counts_identical_positions():
    assert bench.agreement([[1, 2, 3]], [[1, 2, 3]]) == 1.0
    assert bench.agreement([[1, 9, 3], [4, 5]], [[1, 2, 3], [4, 5]]) == pytest.approx(4 / 5)
    assert bench.agreement([[1]], [[1, 2]]) == 0.5, "an early stop counts as a mismatch"


def test_onnx_perplexity_matches_pytorch(tiny_dir, tiny_builds):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = data.corpus("heldout")[:3000]
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    torch_ppl = models.torch_perplexity(model, tokenizer, text)
    onnx_ppl = bench.perplexity(tiny_builds["fp32"].path, text)
    assert onnx_ppl == pytest.approx(torch_ppl, rel=1e-3)


def test_measure_returns_every_column(tiny_builds):
    row = bench.measure(tiny_builds["int4"].path, runs=1, new_tokens=8)
    for key in ("size_mb", "load_s", "prefill_tok_s", "decode_tok_s", "perplexity", "agreement_fp32"):
        assert math.isfinite(row[key]) and row[key] > 0


def test_compare_needs_its_reference(tiny_builds):
    with pytest.raises(ValueError, match="reference build 'fp32'"):
        bench.compare({"int4": tiny_builds["int4"].path})


def test_compare_table_and_plot(tiny_builds):
    table = bench.compare({p: b.path for p, b in tiny_builds.items()}, runs=1, new_tokens=8, progress=False)
    assert list(table.index) == ["fp32", "int8", "int4"]
    assert table.loc["fp32", "agreement_fp32"] == 1.0
    assert table.loc["fp32", "perplexity_vs_fp32_%"] == 0.0
    fig = bench.plot_size_vs_speed(table)
    assert len(fig.axes[0].collections[0].get_offsets()) == 3
    assert fig.axes[1].get_ylabel() == "perplexity change vs fp32 (%)"      # the colour: the change, not the value


def test_bandwidth_and_bytes_per_token(tiny_dir, tiny_builds):
    bw = bench.memory_bandwidth(megabytes=64, runs=2)
    assert bw["read_gb_s"] > 0 and bw["copy_gb_s"] > 0
    per_token = {p: bench.weight_bytes_per_token(b.path) for p, b in tiny_builds.items()}
    assert per_token["int4"] < per_token["int8"] < per_token["fp32"]
    # FP32: 4 bytes per weight of the tiny Phi-3 outside the embedding table (one row of it is read per token).
    config = json.loads((tiny_dir / "config.json").read_text())
    weights = models.model_card(tiny_dir)["parameters"] - config["vocab_size"] * config["hidden_size"]
    assert per_token["fp32"] == pytest.approx(4 * weights, rel=0.01)


def test_benchmark_report_shows_ratios_and_overhead():
    result = {"model": "bench", "parameters": 100, "memory_bandwidth_gb_s": {"read_gb_s": 10.0, "copy_gb_s": 20.0},
              "torch_fp32_eager_decode_tok_s": 10.0,
              "builds": {"int4": {"size_mb": 50, "prefill_tok_s": 300, "decode_tok_s": 100, "speedup_vs_torch": 10,
                                  "bandwidth_bound_tok_s": 200, "fraction_of_bound": 0.5}},
              "int4_vs_fp32_size": 0.25, "int4_vs_fp32_decode": 4.0,
              "labkit_generate_overhead": {"build": "int4", "labkit_decode_tok_s": 99.0, "bare_decode_tok_s": 100.0,
                                           "overhead_%": 1.0},
              "course_notebook_seconds": {"00_environment_check": 20.0, "total": 300.0}}
    text = bench.format_benchmark(result)
    assert "0.50" in text and "INT4/FP32 size 0.25" in text and "overhead 1.0%" in text and "total 300.0" in text


def test_overhead_is_measured(tiny_builds):
    from labkit import bench
    cost = bench.overhead_vs_bare_loop(tiny_builds["int4"].path, new_tokens=16, runs=1)
    assert cost["bare_decode_tok_s"] > 0 and cost["labkit_decode_tok_s"] > 0 and cost["time_to_first_token_ms"] > 0
    assert cost["noise_%"] >= 0


def test_overhead_finding_says_when_the_difference_is_noise():
    from labkit import bench
    assert "not measurable" in bench.overhead_finding({"overhead_%": -11.5, "noise_%": 30.0})
    assert "3.0 % slower" in bench.overhead_finding({"overhead_%": 3.0, "noise_%": 1.0})
