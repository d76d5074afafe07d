import json

import pytest
from PIL import Image

from labkit import data, paths


def test_travel_set_is_large_varied_and_split():
    train, eval_ = data.travel("train"), data.travel("eval")
    assert len(train) + len(eval_) >= 250
    assert len(eval_) >= 30
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in eval_}, "eval prompts must be unseen"
    topics = {r["topic"] for r in train}
    assert {"food", "transport", "budget", "season"} <= topics


@pytest.mark.parametrize("line, reason", [
    ('{"prompt": "Where?", "response": "Here."', "invalid JSON"),
    ('{"prompt": "Where?"}', "missing field 'response'"),
    ('{"prompt": "", "response": "x"}', "field 'prompt' must be a non-empty string"),
    ('["prompt", "response"]', "expected a JSON object"),
])
def test_validator_names_file_line_and_reason(tmp_path, line, reason):
    f = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "Best season in Rome?", "response": "Autumn."})
    f.write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(data.DataError) as err:
        data.validate_travel(f)
    assert f"{f}:3: {reason}" in str(err.value)


def test_validator_reports_every_problem_at_once(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a"}\nnot json\n{"response": "b"}\n')
    with pytest.raises(data.DataError, match="3 problem"):
        data.validate_travel(f)


def test_missing_file_says_where_the_data_lives(tmp_path):
    with pytest.raises(data.DataError, match="file not found"):
        data.validate_travel(tmp_path / "nope.jsonl")


def test_corpus_and_images():
    assert len(data.corpus("train")) > 5 * len(data.corpus("heldout")) > 0
    images = data.images()
    assert len(images) >= 3
    for path in images:
        with Image.open(path) as img:
            assert img.mode == "RGB" and min(img.size) >= 300


@pytest.mark.parametrize("encoding, reason", [
    ("latin-1", "bad.jsonl:2: byte 0xe9 is not UTF-8"),
    ("utf-16", "bad.jsonl is UTF-16 text; JSONL must be UTF-8"),
])
def test_a_file_saved_in_another_encoding_is_named(tmp_path, encoding, reason):
    f = tmp_path / "bad.jsonl"
    lines = [json.dumps({"prompt": "Best time for Rome?", "response": "Autumn."}),
             json.dumps({"prompt": "Café?", "response": "Olé."}, ensure_ascii=False)]
    f.write_bytes("\n".join(lines).encode(encoding))
    with pytest.raises(data.DataError, match=reason):
        data.validate_travel(f)
    f.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())     # UTF-8 with a BOM (Notepad) is fine
    assert len(data.validate_travel(f)) == 2


def test_every_token_of_a_city_answer_occurs_in_the_pre_training_corpus(tiny_dir):
    """A LoRA teaches the base model a job, not new words: answers made of tokens the base model never read came
    out garbled ("small familyatia"). The general travel answers (packing, jet lag) name no course city and no
    verdict reads them, so they are left as written."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    # Paragraph by paragraph, as pre-training reads it: each starts a word with "▁", as text after a quote never does.
    paragraphs = [p.strip() for p in data.corpus("train").split("\n\n")]
    read = {token for ids in tokenizer(paragraphs, verbose=False)["input_ids"] for token in ids}
    for name in ("train", "eval", "train_brief", "train_json"):
        unseen = {}
        for row in data.validate_travel(paths.DATA / "travel" / f"{name}.jsonl"):
            # A JSON answer's keys are the schema's, which guidance writes for the model: its values are its own.
            said = list(json.loads(row["response"]).values()) if name == "train_json" else [row["response"]]
            if row.get("city"):
                for token in (t for text in said for t in tokenizer(text)["input_ids"]):
                    if token not in read:
                        unseen.setdefault(tokenizer.convert_ids_to_tokens(token), row["response"])
        assert not unseen, f"{name}.jsonl: tokens the base model never read in pre-training: {unseen}"
