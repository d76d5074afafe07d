"""Structured output: labkit's schema=/regex=/grammar= on og's guidance, its checks, and what it guarantees."""

import json

import pytest

from labkit import generate, guidance

ANSWER = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
          "properties": {"city": {"type": "string", "maxLength": 30}, "country": {"type": "string", "maxLength": 30}}}


def test_a_schema_gets_compact_separators_and_keeps_its_own_settings():
    request = guidance.request(schema=ANSWER)
    sent = json.loads(request.text)
    assert request.kind == "json_schema" and request.schema == ANSWER
    assert sent["x-guidance"] == {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
    own = guidance.request(schema={**ANSWER, "x-guidance": {"whitespace_flexible": True}})
    assert json.loads(own.text)["x-guidance"]["whitespace_flexible"] is True and "x-guidance" not in own.schema
    assert guidance.request() is None and guidance.request(regex="a|b").kind == "regex"


def test_a_schema_comes_from_a_dict_json_text_or_a_file(tmp_path):
    path = tmp_path / "answer.schema.json"
    path.write_text(json.dumps(ANSWER), encoding="utf-8")
    assert guidance.load_schema(json.dumps(ANSWER)) == guidance.load_schema(path) == guidance.load_schema(str(path))


@pytest.mark.parametrize("given, says", [
    ({"schema": {"type": "objekt"}}, "not a valid JSON schema: 'objekt' is not valid"),
    ({"schema": {"properties": {"city": {"maxLength": -1}}}}, r"not a valid JSON schema.*at properties/city/maxLength"),
    ({"schema": "{not json"}, "is not valid JSON"),
    ({"schema": ["city"]}, "must be a JSON object"),
    ({"schema": "missing.schema.json"}, "Cannot read the schema file missing.schema.json"),
    ({"schema": ANSWER, "regex": "a|b"}, "Give one of schema=, regex= or grammar=, not schema and regex"),
    ({"regex": ""}, "non-empty string"),
])
def test_bad_guidance_is_refused_with_the_fix(given, says):
    with pytest.raises(generate.GenerationError, match=says):
        guidance.request(**given)


@pytest.mark.parametrize("schema, shortest", [
    (ANSWER, {"city": "", "country": ""}),
    ({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 5}}}, {"n": 5}),
    ({"enum": ["autumn", "spring", "summer"]}, "autumn"),
    ({"type": "array", "minItems": 2, "items": {"const": 1}}, [1, 1]),
    ({"type": "string", "minLength": 3}, "xxx"),
    ({"anyOf": [{"type": "string", "minLength": 9}, {"type": "boolean"}]}, False),
])
def test_the_shortest_answer_a_schema_allows(schema, shortest):
    assert guidance.shortest_answer(schema) == shortest


def test_a_schema_answer_parses_fits_and_has_no_free_whitespace(tiny_builds):
    folder = tiny_builds["int4"].path
    reply = generate.generate(folder, "Which country is Kyoto in?", schema=ANSWER, max_new_tokens=48)
    assert json.loads(reply.text) == reply.value and set(reply.value) == {"city", "country"}
    assert "\n" not in reply.text and reply.text.startswith('{"city": "')
    choice = generate.generate(folder, "When should I go to Kyoto?", regex="(spring|summer|autumn|winter)")
    assert choice.text in ("spring", "summer", "autumn", "winter") and choice.value.group(0) == choice.text
    said = generate.generate(folder, "Say yes.", grammar='start: "yes" | "no"')
    assert said.text in ("yes", "no") and said.value == said.text


def test_guidance_errors_come_before_any_token(tiny_builds):
    folder = tiny_builds["int4"].path
    with pytest.raises(generate.GenerationError, match=r"(?s)cannot use this regex: .*unclosed group"):
        generate.generate(folder, "Hi", regex="(spring")
    with pytest.raises(generate.GenerationError, match=r"(?s)cannot use this grammar: .*unknown name"):
        generate.generate(folder, "Hi", grammar="start: foo")
    with pytest.raises(generate.GenerationError, match="num_beams=2 with schema=: onnxruntime-genai applies guidance"):
        generate.generate(folder, "Hi", schema=ANSWER, num_beams=2)
    with pytest.raises(generate.GenerationError, match=r'max_new_tokens=4 cannot hold .*\{"city": "", "country": ""\}'):
        generate.generate(folder, "Hi", schema=ANSWER, max_new_tokens=4)


def test_an_answer_cut_at_max_new_tokens_says_to_raise_it(tiny_builds):
    with pytest.raises(guidance.AnswerCut, match="stopped at max_new_tokens=3 before its regex was complete") as cut:
        generate.generate(tiny_builds["int4"].path, "Hi", regex="[a-z]{40}", max_new_tokens=3)
    assert cut.value.text and len(cut.value.text) < 40


def test_a_chat_keeps_its_schema_for_every_turn(tiny_builds):
    chat = generate.Chat(tiny_builds["int4"].path, schema=ANSWER, max_new_tokens=48)
    for message in ("Which country is Kyoto in?", "And what should I eat there?"):
        assert set(chat.say(message).value) == {"city", "country"}
    assert json.loads(chat.history[-1]["content"])
