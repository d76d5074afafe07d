"""The "Your turn" exercises: checks say ✓ or give a hint (never the answer); attendee copies are blank."""

import json

import nbformat
import pytest
from parameters import notebook_parameters

from labkit import build, checks, course

LABS_WITH_EXERCISES = [nb for nb in course.notebooks() if nb.stem != "05_results"]


@pytest.mark.parametrize("notebook", LABS_WITH_EXERCISES, ids=lambda p: p.stem)
def test_every_lab_ends_with_two_exercises_and_their_checks(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    solutions = [i for i, c in enumerate(cells) if course.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len(solutions) == 2
    for i in solutions:
        assert cells[i].source.startswith("# Your turn"), "the first line says what to set"
        assert "checks." in cells[i + 1].source, "a check follows every solution"
        assert "Right when" in "".join(c.source for c in cells[:i] if c.cell_type == "markdown")


@pytest.mark.parametrize("notebook", course.notebooks(), ids=lambda p: p.stem)
def test_attendee_copies_keep_everything_but_the_solutions(notebook, tmp_path):
    original = nbformat.read(notebook, as_version=4)
    copy = nbformat.read(course.write_exercises(tmp_path)[course.notebooks().index(notebook)], as_version=4)
    assert len(copy.cells) == len(original.cells)
    for before, after in zip(original.cells, copy.cells):
        if course.SOLUTION_TAG in before.metadata.get("tags", []):
            assert after.source == before.source.splitlines()[0] + "\n# your code here\n"
            assert after.metadata["tags"] == ["exercise"]
        else:
            assert after.source == before.source and after.metadata.get("tags") == before.metadata.get("tags")


def first_exercise(cells) -> int:
    return next(i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", []))


# What an attendee runs before their first turn is the lab's own first cells (the test above), and the
# session's course run executes every lab whole. So two blank copies run here, not all five: lab 00's shows that
# the written copies run under papermill and the course kernel; lab 04's, started in an empty runs folder,
# takes the path where lab 03 was never run: it runs lab 03's flow itself, which lands on lab 03's cached outputs.
BLANK_RUNS = ["00_environment_check", "04_inference"]


@pytest.mark.notebook
@pytest.mark.parametrize("stem", BLANK_RUNS)
def test_blank_copies_run_up_to_the_first_exercise(stem, course_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path / "runs"))
    notebook = next(nb for nb in LABS_WITH_EXERCISES if nb.stem == stem)
    copy = course.write_exercises(tmp_path / "exercises")[course.notebooks().index(notebook)]
    nb = nbformat.read(copy, as_version=4)
    nb.cells = nb.cells[:first_exercise(nb.cells)]               # what an attendee runs before their first turn
    nbformat.write(nb, copy)
    course.run_notebook(copy, tmp_path / "run", notebook_parameters(notebook))
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())[stem]
    if stem == "04_inference":
        executed = (tmp_path / "run" / copy.name).read_text()
        assert "no lab 03 output found" in executed, "the copy took the path where lab 03 never ran"
        assert recorded["model_dir"] == course_run.lab("03_olive_awq_lora")["onnx_dir"], \
            "the fallback is lab 03's own flow: with lab 03's settings it reuses lab 03's cached model"
    assert recorded, "the copy recorded its results"


# ------------------------------------------------------------------ the checks themselves
def test_checks_say_yes_to_right_answers_and_hint_without_the_answer(tiny_dir, capsys):
    from labkit import models
    right = models.describe(tiny_dir)["parameters"]
    assert checks.parameter_count(right, tiny_dir)
    wrong = checks.parameter_count(right - 1, tiny_dir)
    assert not wrong and str(right) not in wrong.message.replace(",", "") and "qkv_proj" in wrong.message
    assert checks.uniform_perplexity(2048.0, 2048) and not checks.uniform_perplexity(1.0, 2048)
    out = capsys.readouterr().out
    assert out.count("✓ ") == 2 and out.count("✗ ") == 2


def test_image_token_check_counts_with_the_processor(tmp_path):
    from PIL import Image

    from labkit import vision_export
    folder = vision_export.export("tiny-vision", "int4", progress=False)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1000, 500)).save(photo)
    truth = checks.processor_image_tokens(folder, [photo])
    assert truth == 2353, "1000 x 500 -> 5 x 3 crops of 336 px"
    assert checks.image_tokens(truth, folder, [photo]) and not checks.image_tokens(truth + 1, folder, [photo])


def test_loop_and_budget_checks(tiny_builds):
    folder = tiny_builds["int4"].path
    assert not checks.loop_stopped(folder, "The old baker", {}), "greedy loops on this prompt"
    assert checks.loop_stopped(folder, "The old baker", {"repetition_penalty": 1.3})
    assert not checks.loop_stopped(folder, "The old baker", {"temperature": -1})
    from labkit import generate
    _, tokenizer = generate.load(str(folder))
    budget = generate.context_length(folder) - len(tokenizer.encode(generate.chat_prompt(tokenizer, "Hi")))
    assert checks.new_token_budget(budget, folder, "Hi") and not checks.new_token_budget(budget + 1, folder, "Hi")


def test_block16_check_looks_at_the_graph(tiny_builds):
    b16 = build.build("tiny", "int4", block_size=16, progress=False)
    size = b16.size_bytes / 1e6
    assert checks.block16_build(b16.path, tiny_builds["int4"].path, size)
    assert not checks.block16_build(tiny_builds["int4"].path, tiny_builds["int4"].path, size), "a block-32 build"


def test_own_adapter_needs_twenty_pairs(tiny_dir):
    result = checks.own_adapter(tiny_dir, "unused", [{"prompt": "a", "response": "b"}] * 5)
    assert not result and "at least 20" in result.message


def test_results_of_the_checks_are_json_friendly():
    assert json.dumps(repr(checks.Result(True, "fine"))) == '"\\u2713 fine"'
