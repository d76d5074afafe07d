"""Shadows: random-weight checkpoints with Phi-3.5's published architectures."""

import json

import pytest

from labkit import shadow, sizing


# ------------------------------------------------------------------ shadows
def test_shadow_has_phi35_minis_published_architecture():
    config = shadow.shadow_config("phi-3.5-mini")
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (3072, 8192, 32)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (32, 32, 32064)
    assert (config["original_max_position_embeddings"], config["max_position_embeddings"]) == (4096, 131072)
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert len(config["rope_scaling"]["long_factor"]) == len(config["rope_scaling"]["short_factor"]) == head_dim // 2
    assert shadow.count_parameters(config) == 3_821_079_552            # the published 3.8B
    assert sizing.parameters_of(config) == shadow.count_parameters(config)
    shallow = shadow.shadow_config("phi-3.5-mini", layers=4)
    assert shallow["num_hidden_layers"] == 4 and shallow["hidden_size"] == 3072


@pytest.mark.parametrize("layers", [0, 33, 2.5])
def test_shadow_depth_is_checked(layers):
    with pytest.raises(shadow.ShadowError, match="1 to 32 decoder layers"):
        shadow.shadow_config("phi-3.5-mini", layers)


def test_unknown_shadow_names_the_choices():
    with pytest.raises(shadow.ShadowError, match="phi-3.5-mini"):
        shadow.shadow_config("phi-4")


def test_shadow_weights_are_deterministic_and_sharded_within_bounds():
    a = shadow.random_tensor("model.layers.0.mlp.down_proj.weight", (64, 32))
    b = shadow.random_tensor("model.layers.0.mlp.down_proj.weight", (64, 32))
    c = shadow.random_tensor("model.layers.1.mlp.down_proj.weight", (64, 32))
    assert a.dtype.is_floating_point and str(a.dtype) == "torch.bfloat16"
    assert (a == b).all() and not (a == c).all()
    assert (shadow.random_tensor("model.norm.weight", (8,)) == 1).all()
    shapes = shadow.parameter_shapes(shadow.shadow_config("phi-3.5-mini"))
    shards = shadow.plan_shards(shapes)
    assert sum(len(s) for s in shards) == len(shapes)
    for names in shards:   # bounded creation memory: no shard above the limit (one tensor alone may be)
        assert len(names) == 1 or sum(2 * __import__("math").prod(shapes[n]) for n in names) <= shadow.SHARD_BYTES


def test_one_layer_shadow_is_a_checkpoint_transformers_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    from transformers import AutoConfig

    folder = shadow.create_shadow("phi-3.5-mini", layers=1, progress=False)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(shadow.parameter_shapes(shadow.shadow_config("phi-3.5-mini", 1)))
    config = AutoConfig.from_pretrained(folder)
    assert config.num_hidden_layers == 1 and config.hidden_size == 3072
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert shadow.create_shadow("phi-3.5-mini", layers=1, progress=False) == folder     # cached


def test_labkit_shadows_resolves_the_phi35_ids_to_their_shadows(monkeypatch):
    """`LABKIT_SHADOWS=1`: the laptop profile runs here, on the real architecture with random weights."""
    from labkit import models

    monkeypatch.setenv("LABKIT_SHADOWS", "1")
    monkeypatch.setenv("LABKIT_SHADOW_LAYERS", "1")
    folder = models.resolve_model("microsoft/Phi-3.5-mini-instruct")
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (1, 3072, 32064)
    assert json.loads((folder / "labkit_model.json").read_text())["shadow_of"] == "microsoft/Phi-3.5-mini-instruct"
    assert models.resolve_model("tiny").name.startswith("tiny")          # only the Phi-3.5 ids change
    monkeypatch.setenv("LABKIT_SHADOW_LAYERS", "two")
    with pytest.raises(models.InputError, match="LABKIT_SHADOW_LAYERS='two'"):
        models.resolve_model("microsoft/Phi-3.5-mini-instruct")
    monkeypatch.delenv("LABKIT_SHADOWS")                                  # the real id again: offline, not cached
    with pytest.raises(models.MissingInput, match="not in the local Hugging Face cache"):
        models.resolve_model("microsoft/Phi-3.5-mini-instruct")
