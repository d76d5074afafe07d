import hashlib
import json

import pytest

from labkit import models

MICRO = models.TinySpec(name="micro", vocab_size=32064, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, train_steps=5, seq_len=32, batch_size=2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    return tmp_path


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="multiple of 16"):
        models.TinySpec(hidden_size=120, num_heads=5).validate()   # head_dim 24 builds, then fails at run time
    with pytest.raises(ValueError, match="lm_head"):
        models.TinySpec(vocab_size=384, hidden_size=128, num_heads=8).validate()
    with pytest.raises(ValueError, match="ids up to 32010.*vocab_size=32064"):
        models.TinySpec(vocab_size=2048).validate()


def test_created_model_is_a_normal_checkpoint_and_deterministic(cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = models.create_tiny(MICRO, progress=False)
    digest = hashlib.sha256((first / "model.safetensors").read_bytes()).hexdigest()
    again = models.create_tiny(MICRO, force=True, progress=False)
    assert again == first
    assert hashlib.sha256((again / "model.safetensors").read_bytes()).hexdigest() == digest
    model = AutoModelForCausalLM.from_pretrained(first)
    assert type(model).__name__ == "Phi3ForCausalLM"
    assert model.config.rope_parameters["rope_type"] == "longrope"
    tok = AutoTokenizer.from_pretrained(first)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert tok(text, add_special_tokens=False)["input_ids"] == [32010, 6324, 32007, 32001]   # Phi-3.5's ids
    config = json.loads((first / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"   # Phi-3.5's, which og.Tokenizer 0.12 accepts
    for name in models.TOKENIZER_FILES:
        assert (first / name).read_bytes() == (models.PHI3_TOKENIZER / name).read_bytes()
    assert not list(cache.glob(".tmp-*")), "no temp folder left behind"


def test_the_course_model_learned_something(tiny_dir):
    card = models.model_card(tiny_dir)
    assert card["train_losses"][-1] < 0.5 * card["train_losses"][0]
    assert card["heldout_perplexity"] < 0.01 * card["uniform_perplexity"]


def test_resolve_tiny_and_local_folders(tiny_dir, tmp_path):
    assert models.resolve_model("tiny") == tiny_dir
    assert models.resolve_model(str(tiny_dir)) == tiny_dir
    with pytest.raises(FileNotFoundError, match="no config.json"):
        models.resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither"):
        models.resolve_model("no-such-model")


def test_offline_hub_id_not_in_cache_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        models.resolve_model("microsoft/Phi-3.5-mini-instruct")
    message = str(err.value)
    assert "hf download microsoft/Phi-3.5-mini-instruct" in message and "model='tiny'" in message


def test_tiny_comes_from_the_committed_checkpoint(tiny_dir):
    committed = models.committed_card(models.SPECS["tiny"])
    assert committed is not None, "data/tiny is stale: run `python tools/pretrain_tiny.py` and commit data/tiny"
    assert models.model_card(tiny_dir)["weights_sha256"] == committed["weights_sha256"]
    size = sum(f.stat().st_size for f in models.COMMITTED_TINY.iterdir())
    # Phi-3.5's 32064-row embedding and LM head are most of it; bfloat16 storage keeps it well under the limit
    assert size <= 50e6, f"the committed checkpoint is {size / 1e6:.1f} MB; the repo allows 50 MB"
    assert committed["base_corpus_sentence_share"] >= 0.75     # the base model talks like its corpus


def test_a_damaged_committed_checkpoint_is_refused_before_use(cache, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(models.COMMITTED_TINY, copy)
    monkeypatch.setattr(models, "COMMITTED_TINY", copy)
    (copy / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(FileNotFoundError, match="git checkout -- data/tiny"):
        models.create_tiny("tiny", progress=False)
    assert not [p for p in cache.iterdir() if p.name.startswith("tiny-")], "nothing half-written in the cache"


def test_a_stale_committed_checkpoint_is_not_used(cache, monkeypatch):
    spec = models.TinySpec(**{**models.SPECS["tiny"].__dict__, "seed": 1})
    assert models.committed_card(spec) is None      # another spec (or corpus): pre-trained here instead


def test_fine_tuning_data_does_not_touch_the_pre_trained_model(monkeypatch, tmp_path):
    """Editing lab 03's travel pairs must not make the committed checkpoint stale (a 9-minute pre-training)."""
    import shutil

    from labkit import paths

    spec = models.SPECS["tiny"]
    before = models._cache_key(spec)
    shutil.copytree(paths.DATA / "corpus", tmp_path / "corpus")
    (tmp_path / "travel").mkdir()
    (tmp_path / "travel" / "train.jsonl").write_text('{"prompt": "other", "response": "data"}\n')
    monkeypatch.setattr(paths, "DATA", tmp_path)
    assert models._cache_key(spec) == before
    (tmp_path / "corpus" / "train.txt").write_text("another corpus\n")
    assert models._cache_key(spec) != before          # the corpus is what the model is made of
