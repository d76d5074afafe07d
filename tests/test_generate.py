import pytest

from labkit import generate


def test_streamed_pieces_add_up_to_the_text(tiny_builds):
    pieces = []
    out = generate.generate(tiny_builds["int4"].path, "The old baker", chat=False, max_new_tokens=20,
                            min_new_tokens=20, on_token=pieces.append)
    assert out.new_tokens == 20 and len(out.tokens) == 20
    assert "".join(pieces) == out.text and out.text.strip()
    assert 0 < out.time_to_first_token <= out.seconds


def test_multibyte_characters_stream_whole(tiny_builds):
    # Byte-level BPE splits "é" and "😀" into several byte tokens; the stream must not emit broken halves.
    model, tokenizer = generate.load(str(tiny_builds["fp32"].path))
    text = "café 😀 naïve"
    ids = tokenizer.encode(text)
    stream = tokenizer.create_stream()
    pieces = [stream.decode(int(t)) for t in ids]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_greedy_is_deterministic_and_stops_at_max_length(tiny_builds):
    a = generate.generate(tiny_builds["int4"].path, "Plants turn", chat=False, max_new_tokens=12)
    b = generate.generate(tiny_builds["int4"].path, "Plants turn", chat=False, max_new_tokens=12)
    assert a.tokens == b.tokens and a.new_tokens <= 12


def test_chat_template_comes_from_the_tokenizer(tiny_builds):
    _, tokenizer = generate.load(str(tiny_builds["int4"].path))
    assert generate.chat_prompt(tokenizer, "Hi", system="Be brief.") == \
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"


def test_too_long_prompt_is_a_clear_error(tiny_builds):
    with pytest.raises(generate.GenerationError, match="exceeds the model's context length of 8192"):
        generate.generate(tiny_builds["int4"].path, "word " * 9000, max_new_tokens=10)


def test_not_a_genai_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no genai_config.json"):
        generate.load(str(tmp_path))
