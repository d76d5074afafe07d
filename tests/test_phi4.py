"""Phi-4-mini: its tokenizer (data/phi4-tokenizer/, made by tools/phi4_tokenizer.py), its full-size shadow's
architecture, and a narrow shadow with all its features built to INT4 and generating through a plain og loop."""

import hashlib
import json

import numpy as np
import onnx
import pytest

from labkit import build, models, paths, phi4_mini, scale, shadow, sizing

TOKENIZER = paths.DATA / "phi4-tokenizer"
REFERENCE = json.loads((TOKENIZER / "reference.json").read_text(encoding="utf-8"))
CASES = REFERENCE["cases"]
CHAT = {"<|system|>": 200022, "<|user|>": 200021, "<|assistant|>": 200019, "<|end|>": 200020,
        "<|endoftext|>": 199999}


def test_provenance_licences_and_the_published_split_check_are_committed():
    text = (TOKENIZER / "PROVENANCE.md").read_text(encoding="utf-8")
    source = (paths.REPO / "requirements" / "phi4-tokenizer-source.txt").read_text(encoding="utf-8")
    assert source.split("sha256:")[1].split()[0] in text and "tools/phi4_tokenizer.py" in text
    assert "MIT" in (TOKENIZER / "LICENSE-tiktoken").read_text()
    assert "Microsoft" in (TOKENIZER / "LICENSE-Phi-4").read_text()
    # The first case is llama.cpp's pre-tokenizer text: its ids hash to llama.cpp's entry for the published GPT-4o
    # tokenizer (o200k), which the ids every test below checks against come from.
    assert hashlib.sha256(str(CASES[0]["ids"]).encode()).hexdigest() == REFERENCE["llama_cpp_gpt4o_chkhsh"]
    assert len(CASES) >= 60 and any("京都" in c["text"] for c in CASES)


@pytest.fixture(scope="module")
def narrow_dir():
    """Phi-4-mini's vocabulary, tokenizer, 3:1 grouped-query attention, 0.75 partial rotary and tied embeddings,
    192 wide and 2 layers deep."""
    return shadow.create_shadow("phi-4-mini", 2, narrow=True, progress=False)


def test_transformers_reads_the_tokenizer_as_tiktoken_encodes(narrow_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(narrow_dir)
    assert [tok.encode(c["text"], add_special_tokens=False) for c in CASES] == [c["ids"] for c in CASES]
    assert [tok.decode(c["ids"]) for c in CASES] == [c["text"] for c in CASES]
    assert len(tok) == 199_998 + 12 and tok.convert_tokens_to_ids(list(CHAT)) == list(CHAT.values())
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>", "Phi-4-mini's template: no newlines"


def test_the_shadow_has_phi4_minis_architecture(narrow_dir):
    full = shadow.shadow_config("phi-4-mini")
    assert shadow.count_parameters(full) == 3_836_021_760 == sizing.parameters_of(full)
    assert (full["num_attention_heads"], full["num_key_value_heads"], full["vocab_size"]) == (24, 8, 200_064)
    assert full["partial_rotary_factor"] == 0.75 and full["tie_word_embeddings"]
    assert len(full["rope_scaling"]["long_factor"]) == 128 * 3 // 4 // 2
    # GQA: a third of Phi-3.5-mini's KV cache per token at the same width and depth.
    assert sizing.kv_cache_bytes_per_token(full) * 3 == sizing.kv_cache_bytes_per_token(
        shadow.shadow_config("phi-3.5-mini")) == 786_432
    index = json.loads((narrow_dir / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"], "tied: the checkpoint stores the embedding once"
    generation = json.loads((narrow_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [200020, 199999]


@pytest.fixture(scope="module")
def narrow_int4(narrow_dir):
    return build.build(narrow_dir, "int4", progress=False).path


def test_the_int4_build_keeps_gqa_partial_rotary_and_an_untied_int4_lm_head(narrow_int4):
    graph = onnx.load(str(narrow_int4 / "model.onnx"), load_external_data=False).graph
    gqa = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gqa[0].attribute}
    assert len(gqa) == 2 and (attrs["num_heads"], attrs["kv_num_heads"]) == (3, 1)
    assert attrs["do_rotary"] == 1
    # LongRoPE: an If picks the short or long cos/sin cache (Constants in its branches) by the sequence length.
    switch = next(n for n in graph.node if n.op_type == "If")
    caches = [onnx.helper.get_attribute_value(a) for a in switch.attribute]
    widths = {onnx.helper.get_attribute_value(c.attribute[0]).dims[1] for branch in caches for c in branch.node
              if c.op_type == "Constant" and "cos" in c.output[0]}
    assert widths == {64 * 3 // 4 // 2}, "rotary on 0.75 of each 64-wide head: 24 cos/sin columns"
    # The pinned builder unties INT4 embeddings (default RTN): an fp32 Gather table and an INT4 LM head.
    assert any(n.op_type == "MatMulNBits" and "lm_head" in n.name for n in graph.node)
    assert any(n.op_type == "Gather" and "embed_tokens" in n.name for n in graph.node)
    config = json.loads((narrow_int4 / "genai_config.json").read_text())["model"]
    assert config["vocab_size"] == 200_064 and config["eos_token_id"] == [200020, 199999]


def test_a_plain_og_loop_chats_with_it(narrow_int4):
    import onnxruntime_genai as og

    model = og.Model(str(narrow_int4))
    tokenizer = og.Tokenizer(model)
    assert [list(tokenizer.encode(c["text"])) for c in CASES] == [c["ids"] for c in CASES]
    prompt = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": "Plan a day in Rome."}]),
                                           add_generation_prompt=True)
    assert prompt == "<|user|>Plan a day in Rome.<|end|><|assistant|>"
    input_ids = tokenizer.encode(prompt)
    assert list(input_ids[:1]) == [CHAT["<|user|>"]] and input_ids[-1] == CHAT["<|assistant|>"]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(input_ids) + 8, min_length=len(input_ids) + 8)
    generator = og.Generator(model, params)
    generator.append_tokens(input_ids)
    new = []
    while not generator.is_done():
        generator.generate_next_token()
        new.append(int(generator.get_next_tokens()[0]))
    assert len(new) == 8 and all(0 <= t < 200_064 for t in new)
    logits = np.asarray(generator.get_output("logits"))
    assert logits.shape[-1] == 200_064


def test_context_decode_times_each_context_and_the_longrope_switch(narrow_int4):
    """`make bench-scale`'s context runs on the narrow build: a context whose decode would cross the switch starts
    just past it, and the crossing is timed apart."""
    result = phi4_mini.context_decode(narrow_int4, contexts=(64, 120), new_tokens=16, switch_at=128, runs=2)
    assert list(result["decode_tok_s"]) == ["64", "120"] and all(v > 0 for v in result["decode_tok_s"].values())
    assert result["switch_seconds"] > 0 and result["new_tokens"] == 16 and result["runs"] == 2
    lines = phi4_mini.lines({"kv_cache_bytes_per_token": 786_432, "phi-4-mini": {
        "int4": {"size_bytes": 1, "build_seconds": 60, "peak_rss_bytes": 1, "load_seconds": 1, "prefill_tok_s": 1,
                 "decode_tok_s": 1, "bandwidth_fraction": 0.5},
        "measured_layers": [32], "layers": 32, "full_size_parameters": 3_836_021_760,
        "kv_cache_bytes_per_token": 262_144},
        "context_decode": {"layers": 2, "switch_at": 128, "phi-3.5-mini": result, "phi-4-mini": result}})
    assert "768 KiB" in lines[1] and "256 KiB" in lines[1] and "across the switch" in lines[-1]
    source = {"measured_on": "2026-12-06", "phi-4-mini": {"machine": {"cores": 2}},
              "context_decode": {"layers": 2, "phi-4-mini": result}}
    assert "the median of 2 decodes of 16 tokens from one prefill each" in phi4_mini.source_line(source)
    older = {**source, "context_decode": {"layers": 2, "phi-4-mini": {"new_tokens": 16, "decode_tok_s": {}}}}
    assert "one decode of 16 tokens each" in phi4_mini.source_line(older)


def test_resolve_model_gives_the_phi4_shadow_when_asked(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(shadow, "create_shadow", lambda name, layers, **kw: asked.append((name, layers)) or tmp_path)
    monkeypatch.setenv("LABKIT_SHADOWS", "1")
    monkeypatch.setenv("LABKIT_SHADOW_LAYERS", "40")
    assert models.resolve_model(models.HUB_IDS["phi4-mini"]) == tmp_path
    monkeypatch.delenv("LABKIT_SHADOW_LAYERS")
    models.resolve_model(models.HUB_IDS["phi4-mini"])
    assert asked == [("phi-4-mini", 32), ("phi-4-mini", None)]


def test_lab04_on_a_laptop_chats_with_the_model_lab01_built(monkeypatch, tmp_path):
    """lab 01 run with model="microsoft/Phi-4-mini-instruct": lab 04's chat sections use its INT4 build."""
    from types import SimpleNamespace

    from labkit import plan, results

    phi4 = models.HUB_IDS["phi4-mini"]
    monkeypatch.setattr(results, "find", lambda lab, key, profile=None:
                        phi4 if (lab, key, profile) == ("01_builder_quantization", "model", "laptop") else None)
    built = []
    monkeypatch.setattr(build, "build", lambda model, *a, **k: built.append(model) or SimpleNamespace(path=tmp_path))
    chat_dir, adapter, which = plan.chat_model("laptop", tmp_path / "travel", None, "tiny")
    assert built == [phi4] and chat_dir == tmp_path and adapter is None
    assert f"lab 01's INT4 build of {phi4}" in which


def test_lab00s_laptop_plan_offers_phi4_mini_as_a_choice_that_never_refuses(monkeypatch):
    from labkit import plan

    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 2, "total_ram_bytes": int(8e9),
                                                    "available_ram_bytes": int(8e9), "memory_limited_by": "RAM",
                                                    "free_disk_bytes": int(100e9)})
    rows = [r for r in plan.lab_plan("laptop") if "Phi-4-mini" in r["what"]]
    assert len(rows) == 1 and rows[0]["lab"] == "01" and rows[0]["what"].startswith(plan.OPTIONAL)
    need = sizing.build_requirement("int4", shadow.shadow_config("phi-4-mini"))
    assert "Phi-4-mini shadow" in need["basis"], "sized from its own measurement, not Phi-3.5-mini's"
    assert rows[0]["peak_ram_gb"] == round(need["peak_rss_bytes"] / 1e9, 1)
    assert "downloads 12.6 GB" in rows[0]["basis"] and "MODEL=microsoft/Phi-4-mini-instruct" in rows[0]["basis"]


def test_the_reference_run_puts_phi4_mini_beside_phi35_mini_within_16_gb():
    """docs/measured/bench-scale.json (what labs 01 and 05 show before `make bench-scale` runs here): Phi-4-mini's
    full-size INT4 measured with the Phi-3.5-mini row of the same run, under a 16 GB memory limit."""
    import matplotlib.pyplot as plt

    reference = scale.read(scale.REFERENCE, reference=False)
    phi4 = reference["phi-4-mini"]
    assert phi4["full_size_parameters"] == 3_836_021_760 and phi4["measured_layers"] == [32]
    assert phi4["int4"]["peak_rss_bytes"] < phi4["memory_limit_bytes"] <= 16e9
    table = phi4_mini.table(reference)
    assert list(table.columns) == ["phi-3.5-mini", "phi-4-mini"]
    assert table.loc["build_min", "phi-3.5-mini"] == round(phi4["phi35_int4_same_run"]["build_seconds"] / 60, 2)
    assert list(table.loc["kv_cache_kib_per_token"]) == [768, 256]
    # The FP32 embedding table of 200,064 x 3,072 is most of what the bigger folder holds.
    assert 2.0e9 < (phi4["int4"]["size_bytes"] - phi4["phi35_int4_same_run"]["size_bytes"]) < 200_064 * 3072 * 4
    assert {"decode_tok_s_at_256", "decode_tok_s_at_4096", "longrope_switch_s"} <= set(table.index)
    line = phi4_mini.source_line(reference)
    assert phi4["measured_on"] in line and "16 GB memory limit" in line
    # Joined from another run than the table above, and the line says so (the same run says nothing).
    assert ("not the one of the table above" in line) == (phi4["measured_on"] != reference["measured_on"])
    same_run = {**reference, "phi-4-mini": {**phi4, "measured_on": reference["measured_on"]}}
    assert "not the one of the table above" not in phi4_mini.source_line(same_run)
    figure = phi4_mini.plot(reference)
    assert len(figure.axes) == 2
    plt.close(figure)


def test_bench_scale_refuses_phi4_without_int4_before_any_work(monkeypatch):
    monkeypatch.setattr(shadow, "create_shadow", lambda *a, **k: pytest.fail("no shadow before the check"))
    with pytest.raises(scale.ScaleError, match="keep int4"):
        scale.run_bench_scale(None, ("int8",), phi4=True)


def test_olive_trains_on_each_models_own_chat_format(narrow_dir, tiny_dir):
    """Lab 03's `olive finetune --text_template`: Phi-3.5's format for the course model (unchanged, so no cached
    fine-tune changes), Phi-4-mini's (no newline after a role tag) for Phi-4-mini."""
    from labkit import chat_format, olive

    assert chat_format.text_template(tiny_dir) == olive.PHI3_TEMPLATE
    assert chat_format.text_template(narrow_dir) == "<|user|>{prompt}<|end|><|assistant|>{response}<|end|>"
