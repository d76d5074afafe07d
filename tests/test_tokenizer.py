"""Phi-3.5's tokenizer (data/phi3-tokenizer/, made by tools/phi3_tokenizer.py) in transformers and in og builds."""

import json
import shutil
from pathlib import Path

import pytest

from labkit import build, generate, models, paths, tokenizer

TOKENIZER = paths.DATA / "phi3-tokenizer"
CASES = json.loads((TOKENIZER / "reference.json").read_text())["cases"]
# Strings the project never saw: the languages of the course's upstream guides, code, emoji.
UNSEEN = ["¿Qué debería comer en Lisboa?", "O que devo visitar em Kyoto na primavera?", "我应该在京都吃什么？",
          "교토에서 무엇을 먹어야 하나요?", "def f(x):\n    return {'a': x ** 2}  # 🦙✈️", "naïve café — 10 €"]


def hf_tokenizer(tmp_path):
    """The files as a checkpoint carries them: transformers 5 needs the phi3 config.json beside them."""
    from transformers import AutoTokenizer

    for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / f, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "phi3", "vocab_size": 32064}))
    return AutoTokenizer.from_pretrained(tmp_path)


def test_provenance_and_licences_are_committed():
    text = (TOKENIZER / "PROVENANCE.md").read_text()
    assert "ggml-vocab-phi-3.gguf" in text and "tools/phi3_tokenizer.py" in text
    pinned = (paths.REPO / "requirements" / "phi3-tokenizer-source.txt").read_text().split("sha256:")[1].split()[0]
    assert pinned in text
    assert "MIT" in (TOKENIZER / "LICENSE-llama.cpp").read_text()
    assert "Microsoft" in (TOKENIZER / "LICENSE-Phi-3").read_text()
    assert len(CASES) == 46


def test_all_reference_strings_round_trip_in_transformers(tmp_path):
    tok = hf_tokenizer(tmp_path)
    assert [tok.encode(c["text"], add_special_tokens=False) for c in CASES] == [c["ids"] for c in CASES]
    assert [tok.decode(c["ids"]) for c in CASES] == [c["text"] for c in CASES]


def test_chat_tokens_have_phi35s_ids(tmp_path):
    tok = hf_tokenizer(tmp_path)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
    system, user, end, assistant = 32006, 32010, 32007, 32001
    assert ids[0] == system and ids[-1] == assistant and ids.count(end) == 2 and user in ids
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<s>", "<unk>"]) == [32000, 1, 0]
    assert len(tok) == 32011   # 32000 SentencePiece pieces + Phi-3's 11 added tokens; the config pads to 32064


@pytest.fixture(scope="module")
def phi3_dir(tmp_path_factory):
    """A one-layer random Phi-3 with Phi-3.5's config ids and tokenizer files, as a published folder has them."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    folder = tmp_path_factory.mktemp("phi3-micro")
    torch.manual_seed(0)
    config = Phi3Config(vocab_size=32064, hidden_size=64, intermediate_size=160, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                        bos_token_id=1, eos_token_id=[32007, 32001, 32000], pad_token_id=32000,
                        tie_word_embeddings=False)
    Phi3ForCausalLM(config).save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / f, folder)
    return folder


@pytest.fixture(scope="module")
def phi3_build(phi3_dir):
    return build.build(phi3_dir, "fp32", progress=False).path


@pytest.fixture(scope="module")
def og_tokenizer(phi3_build):
    import onnxruntime_genai as og

    return og.Tokenizer(og.Model(str(phi3_build)))


def test_a_build_speaks_phi3s_vocabulary(phi3_build):
    config = json.loads((phi3_build / "genai_config.json").read_text())["model"]
    assert config["vocab_size"] == 32064
    assert set(config["eos_token_id"]) == {32007, 32001, 32000}, "Phi-3.5's end, assistant and endoftext ids"
    saved = json.loads((phi3_build / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "LlamaTokenizer" and "<|system|>" in saved["chat_template"]
    assert (phi3_build / "tokenizer.json").read_bytes() == (TOKENIZER / "tokenizer.json").read_bytes()


def test_the_builder_cli_alone_writes_a_class_og_rejects_for_phi3_too(phi3_dir, tmp_path):
    """Lab 01's keep-tokenizer step is needed for Phi-3.5's own LlamaTokenizer, not only the course's tokenizer."""
    import subprocess
    import sys

    import onnxruntime_genai as og

    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(phi3_dir), "-o", "out",
                    "-p", "fp32", "-e", "cpu", "-c", "cache"], cwd=tmp_path, check=True, capture_output=True)
    saved = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "TokenizersBackend"
    with pytest.raises(generate.GenerationError, match="TokenizersBackend"):
        generate.open_model(tmp_path / "out")
    tokenizer.keep_source_tokenizer(phi3_dir, tmp_path / "out")
    assert list(og.Tokenizer(og.Model(str(tmp_path / "out"))).encode("Hello")) == [15043]


def test_og_encodes_every_reference_string_as_phi3_does(og_tokenizer):
    assert [list(og_tokenizer.encode(c["text"])) for c in CASES] == [c["ids"] for c in CASES]


def test_og_decodes_every_reference_string_after_bos(og_tokenizer):
    # og 0.12 keeps SentencePiece's leading space unless a BOS precedes (the tokenizer's Strip decoder sees it
    # first); and og.Tokenizer.decode([]) aborts the process, so the empty string is left out (labkit never
    # decodes an empty list).
    cases = [c for c in CASES if c["ids"]]
    assert [og_tokenizer.decode([1, *c["ids"]]) for c in cases] == [c["text"] for c in cases]


def test_og_and_transformers_agree_on_strings_never_seen(og_tokenizer, tmp_path):
    hf = hf_tokenizer(tmp_path)
    for text in UNSEEN:
        assert list(og_tokenizer.encode(text)) == hf.encode(text, add_special_tokens=False), text


def test_streaming_decode_holds_back_partial_characters(og_tokenizer):
    """A character of several bytes arrives as several byte tokens; the stream prints it once it is whole."""
    text = "Kyoto 京都 🦙"
    ids = list(og_tokenizer.encode(text))
    stream = og_tokenizer.create_stream()
    stream.decode(1)
    pieces = [stream.decode(i) for i in ids]
    assert "".join(pieces) == text
    assert "" in pieces, "the llama's four byte tokens print nothing until the last one"
    assert all("\ufffd" not in p for p in pieces)


def test_a_folder_without_tokenizer_json_is_named_with_the_fix(tiny_builds, tmp_path):
    folder = tmp_path / "build"
    shutil.copytree(tiny_builds["int4"].path, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(generate.GenerationError, match="no tokenizer.json.*keep-tokenizer"):
        generate.open_model(folder)
    tokenizer.keep_source_tokenizer(models.resolve_model("tiny"), folder)
    assert generate.open_model(folder) is not None


def test_a_tokenizersbackend_folder_is_named_with_the_fix(tiny_builds, tmp_path):
    folder = tmp_path / "build"
    shutil.copytree(tiny_builds["int4"].path, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    with pytest.raises(generate.GenerationError, match="TokenizersBackend.*keep-tokenizer"):
        generate.open_model(folder)


def test_a_tokenizer_of_another_vocabulary_is_named(tiny_builds, tmp_path):
    folder = tmp_path / "build"
    shutil.copytree(tiny_builds["int4"].path, folder)
    config = json.loads((folder / "genai_config.json").read_text())
    config["model"]["vocab_size"] = 1000
    (folder / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(generate.GenerationError, match="ids up to .* vocabulary has 1000 rows"):
        generate.open_model(folder)


def _named_paths(value):
    """Every path a course result names, however deep in results.json."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _named_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_paths(item)
    elif isinstance(value, str) and "/" in value:
        yield Path(value)


@pytest.mark.course
def test_every_course_build_speaks_phi35s_vocabulary(course_run, tmp_path):
    """Lab 01's builds, lab 02's two vision exports, lab 03's export: og cuts unseen text as Phi-3 does."""
    import onnxruntime_genai as og

    builds = sorted({p for p in _named_paths(course_run.results) if (p / "genai_config.json").exists()})
    assert len(builds) >= 8, builds     # 5 in lab 01 with the suite's parameters, 2 in lab 02, 1 in lab 03
    hf = hf_tokenizer(tmp_path)
    expected = [hf.encode(text, add_special_tokens=False) for text in UNSEEN]
    for folder in builds:
        assert json.loads((folder / "genai_config.json").read_text())["model"]["vocab_size"] == 32064, folder
        og_tok = og.Tokenizer(og.Model(str(folder)))
        assert [list(og_tok.encode(text)) for text in UNSEEN] == expected, folder
