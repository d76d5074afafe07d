from labkit import chat_panel


def test_chat_panel_driven_from_code(tiny_builds):
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path, system="Be brief.")
    assert panel.adapter.options == ("none (base model)",)
    panel.prompt.value = "Tell me a fact."
    panel.max_tokens.value = 16
    panel.send.click()
    assert panel.answer.value.startswith("you: Tell me a fact.\nmodel: ")
    assert len(panel.answer.value) > len("you: Tell me a fact.\nmodel: \n\n")
    assert "tok/s" in panel.status.value and panel.prompt.value == ""
    assert len(panel.chat.history) == 2 and panel.chat.max_new_tokens == 16
    panel.reset.click()
    assert panel.answer.value == "" and panel.chat.history == []


def test_empty_prompt_and_errors_show_in_status(tiny_builds, monkeypatch):
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path)
    panel.send.click()
    assert "type a question" in panel.status.value
    panel.prompt.value = "word " * 9000
    panel.send.click()
    assert "error" in panel.status.value and "context length" in panel.status.value


def test_panel_is_readable(tiny_builds):
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path)
    assert not panel.answer.disabled, "a disabled textarea is greyed out"
    assert all(s.style.description_width == "initial" for s in (panel.temperature, panel.top_p, panel.max_tokens))


def test_the_panel_starts_on_the_first_adapter(tiny_builds, tmp_path):
    """Lab 04's panel answers with the travel adapter until the attendee picks another (or the base model)."""
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path, {"travel": tmp_path / "t.onnx_adapter",
                                                              "brief": tmp_path / "b.onnx_adapter"})
    assert panel.adapter.options == ("travel", "brief", "none (base model)") and panel.adapter.value == "travel"
    assert panel.chat.adapter == tmp_path / "t.onnx_adapter"


def test_the_panel_is_greedy_until_sample_is_ticked(tiny_builds):
    """Headless, lab 04's panel answers greedily: the executed notebook shows the same answers every run."""
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path)
    panel.prompt.value = "Tell me a fact."
    panel.send.click()
    assert panel.chat.search == {}
    panel.sample.value, panel.temperature.value = True, 0.9
    panel.prompt.value = "Tell me another."
    panel.send.click()
    assert panel.chat.search["do_sample"] is True and panel.chat.search["temperature"] == 0.9


def test_the_json_box_makes_every_answer_follow_the_schema(tiny_builds):
    import json

    schema = {"type": "object", "required": ["city"], "additionalProperties": False,
              "properties": {"city": {"type": "string", "maxLength": 20}}}
    assert chat_panel.ChatPanel(tiny_builds["int4"].path).json.disabled, "no schema, nothing to tick"
    panel = chat_panel.ChatPanel(tiny_builds["int4"].path, schema=schema)
    panel.json.value, panel.max_tokens.value = True, 24
    panel.prompt.value = "Which city has the Colosseum?"
    panel.send.click()
    assert set(json.loads(panel.chat.history[-1]["content"])) == {"city"}, panel.status.value
    panel.json.value = False
    panel.prompt.value = "Tell me a fact."
    panel.send.click()
    assert panel.chat.schema is None
