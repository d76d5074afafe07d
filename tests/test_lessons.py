"""The executed labs read as an attendee reads them: quiet outputs, and text that the output below it bears out.

Reads the notebooks of the session's course run (tests/conftest.py); runs nothing itself. The course's own
parameters train longer than the suite's (tests/parameters.py), so rates are floors here, and what a lab's
markdown states as a finding must hold in this run too.
"""

import re

import nbformat
import pytest
from helpers import notebook_defaults
from parameters import TEST_PARAMETERS

from labkit import course, data, judge, paths

STEMS = [nb.stem for nb in course.notebooks()]
# A repr that shows only where the object has no richer view: the attendee would read the raw Python object.
RAW_REPR = re.compile(r"PosixPath\(|WindowsPath\(| object at 0x[0-9a-f]+>")
TYPED_SPEED = re.compile(r"\d[\d,.]*\s*(tok/s|tokens/s|tokens per second)")


def _executed(course_run, stem):
    return nbformat.read(course_run.run_dir / f"{stem}.ipynb", as_version=4)


def _text(output) -> str:
    return output.get("text", "") + output.get("data", {}).get("text/plain", "")


def _cell_after(nb, heading: str):
    """The first code cell after the markdown cell that starts with `heading`."""
    cells = nb.cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith(heading))
    return next(c for c in cells[start:] if c.cell_type == "code")


@pytest.mark.parametrize("stem", STEMS)
def test_executed_lab_is_quiet(stem, course_run):
    code = [c for c in _executed(course_run, stem).cells if c.cell_type == "code"]
    stderr = [_text(o) for c in code for o in c.outputs if o.get("name") == "stderr"]
    assert len(stderr) <= 5, f"{len(stderr)} stderr outputs (at most 5): {[s[:80] for s in stderr]}"
    crowded = [(len(c.outputs), c.source[:60]) for c in code if len(c.outputs) > 20]
    assert not crowded, f"cells with more than 20 outputs: {crowded}"
    richer = ("text/html", "image/png")
    raw = [_text(o)[:80] for c in code for o in c.outputs if not any(kind in o.get("data", {}) for kind in richer)
           and (RAW_REPR.search(_text(o)) or (o.output_type == "execute_result" and _text(o)[:1] in ("{", "[", "(")))]
    assert not raw, f"raw object reprs where the attendee expects a value: {raw}"
    # Paths print relative to the course folder (`paths.shown`), so a lab reads the same on every machine; a
    # command to copy, or an error naming the file to fix, may name it in full.
    where = str(paths.REPO)
    absolute = [line.strip()[:100] for c in code for o in c.outputs for line in _text(o).splitlines()
                if where in line and "python -m" not in line and "Error" not in line]
    assert not absolute, f"absolute paths in the output (print them with paths.shown): {absolute}"


@pytest.mark.parametrize("stem", STEMS)
def test_markdown_types_no_speed(stem):
    nb = nbformat.read(course.notebooks()[STEMS.index(stem)], as_version=4)
    typed = [m.group(0) for c in nb.cells if c.cell_type == "markdown" for m in TYPED_SPEED.finditer(c.source)]
    assert not typed, f"speeds typed in markdown (print them from the run instead): {typed}"


def test_lab04_answers_name_the_city_asked(course_run):
    nb, recorded = _executed(course_run, "04_inference"), course_run.lab("04_inference")
    parameters = {**notebook_defaults("04_inference"), **TEST_PARAMETERS["04_inference"]}
    asked = judge.city_in(parameters["prompt"])
    bare = "".join(_text(o) for o in _cell_after(nb, "## 1. The bare loop").outputs)
    assert judge.names_city(bare, asked), f"the bare loop (travel adapter) answers about {asked}: {bare!r}"
    assert judge.names_city(recorded["first_reply"]["text"], asked), recorded["first_reply"]
    # The two-turn demos name the city asked, in both turns, and print the verdict under each answer.
    demo_city = judge.city_in(parameters["chat_turns"][0])
    assert [turn["message"] for turn in recorded["chat_demo"]] == parameters["chat_turns"]
    printed = "".join(_text(o) for o in _cell_after(nb, "## 4. Multi-turn chat").outputs)
    for turn in recorded["chat_demo"]:
        assert judge.names_city(turn["answer"], demo_city), f"section 4's chat keeps {demo_city}: {turn}"
        assert f"{turn['answer']}\n       names {demo_city}: yes" in printed
    assert len(recorded["panel_answers"]) == len(parameters["fixed_prompts"]), "headless, the panel answers them"
    panel_city = judge.city_in(parameters["fixed_prompts"][0])
    assert judge.names_city(recorded["panel_answers"][0], panel_city), recorded["panel_answers"]
    printed = "".join(_text(o) for o in _cell_after(nb, "## 8. A chat panel").outputs)
    facts = {(row["city"], row["topic"]): row["fact"] for row in data.paraphrases()}
    for n, (answer, topic) in enumerate(zip(recorded["panel_answers"], parameters["fixed_topics"]), 1):
        fact = facts[panel_city, topic]         # each answer judged on the fact its question asks, not the city alone
        assert f"answer {n}: names {panel_city}: {'yes' if judge.names_city(answer, panel_city) else 'no'} · " \
               f"states its {topic} fact ({fact}): {'yes' if judge.states_fact(answer, fact) else 'no'}" in printed


def test_lab03_findings_match_its_tables(course_run):
    nb, recorded = _executed(course_run, "03_olive_awq_lora"), course_run.lab("03_olive_awq_lora")
    printed = "".join(_text(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for row in recorded["rtn_vs_awq"]:
        if row["method"] == "awq-int4":
            beat = row["kl_vs_rtn"] < 1
            assert f"{row['model']}: AWQ's KL is {row['kl_vs_rtn']:.2f}x RTN's. AWQ beat RTN here: " \
                   f"{'yes' if beat else 'no'}" in printed
    # "Reading the rates": the adapter names the city far more often than the base model, and states the fact
    # asked in fewer answers than it names the city.
    base, tuned = recorded["paraphrase_rates"]["base"], recorded["paraphrase_rates"]["travel adapter"]
    assert tuned["city_named"] > base["city_named"] and tuned["fact_stated"] <= tuned["city_named"]


def test_lab01_reading_the_table_holds(course_run):
    builds = course_run.lab("01_builder_quantization")["builds"]
    agreement = {name: row["agreement_fp32"] for name, row in builds.items() if name != "fp32"}
    assert max(agreement, key=agreement.get) == "int8", f"'INT8 stays closest': {agreement}"
    assert builds["int4-k_quant-b32"]["size_mb"] > builds["int4"]["size_mb"], "'k_quant keeps lm_head in 8 bits'"


def test_lab01_compares_with_the_peers_even_before_make_bench_peers(course_run):
    # The suite's runs/ has no bench-peers.json: section 7 shows the committed reference run and says so.
    cell = _cell_after(_executed(course_run, "01_builder_quantization"), "## 7. How does this compare")
    printed = "".join(_text(o) for o in cell.outputs)
    assert "The course's reference run of `make bench-peers`" in printed and "int8 instructions:" in printed
    assert any("text/html" in o.get("data", {}) for o in cell.outputs), "the table"
    assert "the kernels alone, one 3072×8192 MatMul of 128 tokens" in printed
    assert "weights read per second against the memory read benchmark of the same run" in printed


def test_lab05_headline_leads_with_what_the_fine_tune_taught(course_run):
    headline = list(course_run.lab("05_results")["headline"])
    assert headline[0].startswith("base: names the city asked"), headline
    assert "travel adapter: follow-up keeps the city" in headline[:5], headline
    # the tiny model's INT4/FP32 ratios come with Phi-3.5-mini's own (the committed reference without a bench run)
    assert "Phi-3.5-mini at real size: int4 decode / fp32" in headline, headline


def test_lab04_judges_the_brief_adapter_on_content_too(course_run):
    """One sentence is the brief adapter's style; the facts it states are printed beside, as lab 03 counts them."""
    printed = "".join(_text(o) for o in _cell_after(_executed(course_run, "04_inference"),
                                                    "Does each adapter keep its style").outputs)
    assert re.search(r"the fact asked, stated: travel in \d+%, brief in \d+%", printed), printed[-300:]
