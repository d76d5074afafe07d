"""labkit.judge: the verdicts lab 03 and lab 04 print, and the paraphrase set they are measured on."""

import pandas as pd
import pytest

from labkit import data, judge


def test_verdicts_are_plain_substring_and_sentence_checks():
    assert judge.names_city("In kyoto, try kaiseki dinners.", "Kyoto")
    assert not judge.names_city("In Osaka, try takoyaki.", "Kyoto")
    assert judge.states_fact("Do not miss the Belem tower. Go early.", "Belem tower")
    assert judge.sentences("Do not miss the Belem tower. Go early.") == 2
    assert judge.sentences("One useful tip for Lisbon: 3.5 km of hills") == 0     # a decimal point ends nothing
    assert judge.one_sentence_share(["One.", "One. Two.", "One! Two? Three."]) == pytest.approx(1 / 3)
    assert judge.multi_sentence_share(["One.", "One. Two.", "One! Two? Three."]) == pytest.approx(2 / 3)


def test_travel_rates_count_city_and_fact_separately():
    rows = [{"city": "Kyoto", "fact": "kaiseki"}, {"city": "Cairo", "fact": "koshari"}]
    rates = judge.travel_rates(rows, ["In Kyoto, try kaiseki.", "In Cairo, try pad thai."])
    assert (rates.city_named, rates.fact_stated, rates.questions) == (1.0, 0.5, 2)
    with pytest.raises(ValueError, match="one answer per question"):
        judge.travel_rates(rows, ["only one"])


def test_corpus_sentences_are_told_from_word_salad():
    assert judge.is_corpus_sentence("The river carried a wooden box near the harbour.")
    assert not judge.is_corpus_sentence("The river carried a wooden box")                # no sentence end
    assert not judge.is_corpus_sentence("Zorbly quantum frabjous wibble.")              # not the corpus's words


def test_paraphrases_are_worded_unlike_training_and_eval_prompts():
    questions = data.paraphrases()
    seen = {row["prompt"] for split in ("train", "eval") for row in data.travel(split)}
    assert len(questions) == 448 and not {q["prompt"] for q in questions} & seen
    assert len(data.paraphrases(every=4)) == 112
    with pytest.raises(ValueError, match="at least 1"):
        data.paraphrases(every=0)


def test_every_paraphrase_fact_is_in_the_training_answers_for_its_city():
    answers_by_city = {}
    for split in ("train", "eval"):
        for row in data.travel(split):
            answers_by_city.setdefault(row["city"], []).append(row["response"].lower())
    for q in data.paraphrases():
        assert any(q["fact"].lower() in answer for answer in answers_by_city[q["city"]]), q


def test_a_bad_paraphrase_file_names_its_line(tmp_path):
    bad = tmp_path / "questions.jsonl"
    bad.write_text('{"prompt": "Where?", "city": "Kyoto", "fact": "Japan"}\n{"prompt": "Where?", "city": ""}\n')
    with pytest.raises(data.DataError, match=r"questions.jsonl:2: missing or empty field\(s\) \['city', 'fact'\]"):
        data.validate_travel_questions(bad)


def test_answers_are_judged_whole():
    """The judge's token budget lets the longest training answer end (a cut-off answer has too few sentences)."""
    from transformers import AutoTokenizer

    from labkit import models

    tokenizer = AutoTokenizer.from_pretrained(models.COMMITTED_TINY)
    longest = max(len(tokenizer(row["response"] + "<|end|>")["input_ids"]) for row in data.travel("train"))
    assert longest <= judge.ANSWER_TOKENS


def test_followups_are_two_turns_worded_unlike_any_training_chat():
    chats = data.followups()
    assert len(chats) == 224 and len(data.followups(every=4)) == 56
    train = data.travel("train")
    seen = " ".join(row["prompt"] for row in train)
    assert not any(chat["followup"] in seen for chat in chats), "the follow-ups are worded unlike training"
    assert all(chat["city"] in chat["prompt"] and chat["city"] not in chat["followup"] for chat in chats)
    two_turn = [row for row in train if "<|assistant|>" in row["prompt"]]
    assert two_turn and all(row["city"] in row["prompt"].split("<|user|>")[0] for row in two_turn), \
        "each training follow-up's city is only in the turn before"
    assert all(row["city"] not in row["prompt"].split("<|user|>\n")[-1] for row in two_turn)


def test_city_in_finds_the_longest_course_city_first():
    assert judge.city_in("Is Quebec City cheaper than Lisbon?") == "Quebec City"
    assert judge.city_in("What should I eat in Rome?") == "Rome"
    assert judge.city_in("Where should I go in spring?") is None


def test_followup_rates_and_verdict_columns(monkeypatch):
    from labkit import generate

    answers = iter(["In Kyoto, try kaiseki.", "A day in Kyoto costs 100 US dollars.",
                    "In Cairo, try koshari.", "A day in Lima costs 60 US dollars."])

    class FakeChat:
        def __init__(self, *args, **kwargs):
            pass

        def say(self, message):
            return generate.Generation(next(answers), 1, 1, 0.1, 0.01)

    monkeypatch.setattr(generate, "Chat", FakeChat)
    chats = [{"prompt": "What dish is Kyoto known for?", "followup": "Cost there?", "city": "Kyoto",
              "fact": "100 US dollars"},
             {"prompt": "What dish is Cairo known for?", "followup": "Cost there?", "city": "Cairo",
              "fact": "50 US dollars"}]
    table, rates = judge.ask_followups("unused", chats, None, progress=False)
    assert rates.as_dict() == {"first_names_city": 1.0, "followup_keeps_city": 0.5, "followup_states_fact": 0.5,
                               "chats": 2}
    assert table["follow-up keeps city"].tolist() == [True, False]
    said = judge.verdicts(pd.DataFrame({"prompt": ["q"], "city": ["Kyoto"], "fact": ["kaiseki"],
                                        "travel adapter": ["In Kyoto, try sushi."]}), "travel adapter")
    assert said[["city named", "fact stated"]].values.tolist() == [[True, False]]


def test_a_garbled_splice_does_not_name_the_city():
    assert not judge.names_city("A mid-range traveller in Lisbonoma and ugali.", "Lisbon")
    assert judge.names_city("A mid-range traveller in Lisbon, then lisbon.", "Lisbon")
    assert not judge.states_fact("It costs 145 US dollars.", "45 US dollars")


def test_misses_tell_another_topic_of_the_city_from_anything_else():
    rows = [r for r in data.paraphrases() if r["city"] == "Kyoto"]
    food = next(r for r in rows if r["topic"] == "food")
    season = next(r for r in rows if r["topic"] == "season")
    answers = [f"The best time to visit Kyoto is autumn, thanks to {season['fact']}.",    # Kyoto, wrong topic
               f"In Kyoto, try {food['fact']}.",                                         # the fact asked
               "The sea crossed the green hills at dawn."]                               # neither
    assert judge.misses([food, food, food], answers) == {"missed": 2, "another topic of the city asked": 1,
                                                          "anything else": 1}


def test_the_rates_table_shows_its_question_count_as_a_whole_number():
    table = judge.rates_table({"base": judge.TravelRates(0.35, 0.15, 448),
                               "travel adapter": judge.TravelRates(1.0, 0.89, 448)}).round(2)
    assert list(table.index) == ["base", "travel adapter"]
    assert table["questions"].tolist() == [448, 448] and "448.0" not in table.to_string()
    assert table.loc["travel adapter", "fact stated"] == 0.89


def test_structured_answers_are_judged_for_form_and_fields(monkeypatch):
    from labkit import generate, guidance

    schema = {"type": "object", "required": ["city", "country", "answer"], "additionalProperties": False,
              "properties": {k: {"type": "string"} for k in ("city", "country", "answer")}}
    answers = iter(['{"city": "Kyoto", "country": "Japan", "answer": "In Kyoto, try kaiseki dinners."}',
                    '{"city": "Cairo", "country": "Peru", "answer": "No."}',        # the wrong country
                    '{"city": "Rome", "country": "Italy"}',                          # a key missing: not valid
                    "In Lisbon, try pastel de nata."])                               # not JSON

    def fake_generate(model_dir, prompt, max_new_tokens, adapter, system, schema):
        text = next(answers)
        if text.startswith("In Lisbon"):
            raise guidance.AnswerCut("cut", text)
        return generate.Generation(text, 10, 11, 0.6, 0.1)

    monkeypatch.setattr(generate, "generate", fake_generate)
    questions = [{"prompt": f"q{i}", "city": city, "fact": fact} for i, (city, fact) in
                 enumerate([("Kyoto", "kaiseki"), ("Cairo", "koshari"), ("Rome", "carbonara"), ("Lisbon", "pastel")])]
    table, rates = judge.ask_structured("unused", questions, None, schema, guided=True, progress=False)
    assert table["valid"].tolist() == [True, True, False, False]
    assert table["why not"][2].startswith("JSON, but not the schema's: 'answer' is a required property")
    assert table["why not"][3].startswith("not JSON")
    assert (rates.valid, rates.city_right, rates.country_right, rates.fact_stated) == (0.5, 0.5, 0.25, 0.25)
    assert rates.tokens_per_second == pytest.approx(30 / 1.5) and rates.answers == 4
    shown = judge.structured_table({"with guidance": rates})
    assert list(shown.columns) == ["valid", "city right", "country right", "fact stated", "decode tok/s", "answers"]
    assert shown.loc["with guidance", "country right"] == "25%" and "25%" in shown.to_string()


def test_sampled_structured_answers_draw_a_seed_per_question(monkeypatch):
    """One seed for every question repeats one stream of draws: a rare token drawn at step 2 of one answer is drawn
    at step 2 of all of them (lab 04 once measured 0 % valid JSON that way). Question i samples with seed + i."""
    from labkit import generate

    seen = []

    def fake_generate(model_dir, prompt, max_new_tokens, adapter, system, schema, **search):
        seen.append(search)
        return generate.Generation('{"city": "Kyoto"}', 10, 5, 0.6, 0.1)

    monkeypatch.setattr(generate, "generate", fake_generate)
    questions = [{"prompt": f"q{i}", "city": "Kyoto", "fact": "kaiseki"} for i in range(3)]
    search = {"do_sample": True, "temperature": 0.7, "random_seed": 2**31 - 2}
    judge.ask_structured("unused", questions, None, {"type": "object"}, guided=False, progress=False, **search)
    assert [s["random_seed"] for s in seen] == [2**31 - 2, 2**31 - 1, 0]      # in og's range
    assert all(s["do_sample"] and s["temperature"] == 0.7 for s in seen)
    assert search["random_seed"] == 2**31 - 2, "the caller's options are not changed"
    seen.clear()
    judge.ask_structured("unused", questions, None, {"type": "object"}, guided=False, progress=False)
    assert seen == [{}, {}, {}], "greedy stays greedy"
