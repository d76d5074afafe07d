"""Running the notebooks headless (labkit.course): parameters, failures, timeouts, the attendee copies."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from parameters import LAB04_FEW_QUESTIONS, notebook_parameters

from labkit import course, paths
from labkit.core.profiles import get_profile

LABS_WITH_EXERCISES = [nb for nb in course.notebooks() if nb.stem != "05_results"]


def write_notebook(path, *sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failure_shows_the_cell_source_and_error(tmp_path):
    nb = write_notebook(tmp_path / "bad.ipynb", 'profile = "cpu"\nrun_dir = ""', "x = 1\nraise ValueError('boom')")
    with pytest.raises(course.NotebookFailed) as err:
        course.run_notebook(nb, tmp_path / "run")
    message = str(err.value)
    assert "raise ValueError('boom')" in message and "ValueError: boom" in message
    assert (tmp_path / "run" / "bad.ipynb").exists(), "the executed copy is kept"


def test_parameters_and_run_folder_reach_the_notebook(tmp_path):
    nb = write_notebook(tmp_path / "ok.ipynb", 'profile = "cpu"\nrun_dir = ""\nsteps = 100',
                        "import labkit\nlab = labkit.start_lab('05_results', profile, run_dir)\n"
                        "lab.record({'variants': steps})")
    out = course.run_notebook(nb, tmp_path / "run", {"steps": 3})
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == {"05_results": {"profile": "cpu", "shadows": False, "variants": 3}}   # every lab: its profile
    cells = nbformat.read(out, 4).cells
    assert cells[1].source.find("steps = 3") >= 0   # papermill's injected cell
    shown = [o for o in cells[-1].outputs if o.output_type == "execute_result"]
    assert not shown, "a cell ending in lab.record() shows no value, such as a raw PosixPath"


def test_new_run_dirs_are_separate_and_latest_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))
    a, b = paths.new_run_dir(), paths.new_run_dir()
    assert a != b and a.parent == b.parent == tmp_path
    assert (tmp_path / "latest").resolve() == b == paths.latest_run().resolve()
    assert (tmp_path / "latest.txt").read_text(encoding="utf-8").strip() == b.name


def test_latest_run_without_links_as_on_windows(tmp_path, monkeypatch):
    """No symlink privilege (Windows without Developer Mode) or a file system without links: latest.txt serves."""
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))

    def no_links(self, target, target_is_directory=False):
        raise OSError(1314, "A required privilege is not held by the client")
    monkeypatch.setattr(Path, "symlink_to", no_links)
    first, second = paths.new_run_dir(), paths.new_run_dir()
    assert not (tmp_path / "latest").exists() and paths.latest_run() == second != first
    assert not list(tmp_path.glob(".latest-*")), "no temp pointer or link left behind"
    (second / "results.json").write_text('{"01_builder_quantization": {"profile": "cpu", "int4_dir": "x"}}',
                                         encoding="utf-8")
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path / "elsewhere"))
    from labkit.core import results
    assert results.find("01_builder_quantization", "int4_dir") == "x", "later labs find lab 01's outputs"


def test_profiles(monkeypatch):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    assert get_profile().name == "cpu"
    assert get_profile("gpu").execution_provider == "cuda"
    with pytest.raises(ValueError, match="LABKIT_PROFILE"):
        get_profile("tpu")


def test_a_hung_cell_fails_after_the_profiles_limit_with_the_knob_named(tmp_path, monkeypatch):
    nb = write_notebook(tmp_path / "hang.ipynb", 'profile = "cpu"\nrun_dir = ""', "import time\ntime.sleep(120)")
    monkeypatch.setenv("LABKIT_CELL_TIMEOUT", "3")
    with pytest.raises(course.NotebookFailed, match=r"(?s)longer than 3 s.*time.sleep\(120\).*LABKIT_CELL_TIMEOUT"):
        course.run_notebook(nb, tmp_path / "run")


def test_cell_limits_fit_each_profile(monkeypatch):
    monkeypatch.delenv("LABKIT_CELL_TIMEOUT", raising=False)
    assert course.cell_timeout("cpu") <= 1200, "a hung tiny-model cell fails within minutes"
    assert course.cell_timeout("gpu") >= 3600, "real-size builds and exports on a GPU take long"


def test_headless_runs_save_finished_text_progress_bars(tmp_path):
    nb = write_notebook(tmp_path / "bars.ipynb", 'profile = "cpu"\nrun_dir = ""',
                        "import labkit\nlab = labkit.start_lab('bars', profile, run_dir)\n"
                        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='work'):\n    pass")
    executed = course.run_notebook(nb, tmp_path / "run")
    text = executed.read_text()
    assert "application/vnd.jupyter.widget-view+json" not in text, "no widget placeholder to freeze at 0%"
    assert "work: 100%" in text


def test_a_finished_bar_keeps_its_last_state_without_padding():
    refreshes = "building tiny int4:  50%|#####     | 15/30 [00:01]\rbuilding tiny int4: 100%|##| 30/30 [00:02]  "
    assert course._last_state(refreshes) == "building tiny int4: 100%|##| 30/30 [00:02]"


def test_executed_notebooks_keep_what_jupyter_shows(tmp_path):
    """A streamed answer is one output, a progress bar its last state: not one output per token or refresh."""
    nb = write_notebook(tmp_path / "stream.ipynb", 'profile = "cpu"\nrun_dir = ""',
                        "import time\nfrom tqdm.std import tqdm\n"
                        "for word in ['In', ' Rome', ',', ' try', ' carbonara.']:\n"
                        "    print(word, end='', flush=True)\n    time.sleep(0.05)\n"
                        "for _ in tqdm(range(50), desc='work', mininterval=0):\n    time.sleep(0.01)\n"
                        "print('done')")
    cell = nbformat.read(course.run_notebook(nb, tmp_path / "run"), as_version=4).cells[-1]
    streams = [(out.name, out.text) for out in cell.outputs]
    assert [name for name, _ in streams] == ["stdout", "stderr", "stdout"], streams
    assert streams[0][1] == "In Rome, try carbonara."
    bar = streams[1][1]
    assert "work: 100%" in bar and "\r" not in bar and " 0%" not in bar and bar.count("\n") <= 1
    assert streams[2][1] == "done\n"


@pytest.mark.parametrize("notebook", LABS_WITH_EXERCISES, ids=lambda p: p.stem)
def test_every_lab_ends_with_exercises_and_their_checks(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    solutions = [i for i, c in enumerate(cells) if course.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len(solutions) >= 2
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


@pytest.mark.parametrize("notebook", course.notebooks(), ids=lambda p: p.stem)
def test_a_lab_without_exercises_stops_at_its_your_turn_section(notebook):
    """`labkit course --no-exercises` (the suite's quick laptop run): the lab whole up to "## Your turn"."""
    original = nbformat.read(notebook, as_version=4).cells
    kept = course.without_exercises(notebook).cells
    assert [c.source for c in kept] == [c.source for c in original[:len(kept)]]
    assert not any(course.SOLUTION_TAG in c.metadata.get("tags", []) for c in kept)
    if notebook in LABS_WITH_EXERCISES:
        assert original[len(kept)].source.startswith("## Your turn\n")
    else:
        assert len(kept) == len(original)


def test_a_solution_outside_the_your_turn_section_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),
                                         nbformat.v4.new_markdown_cell("## Your turn\n")])
    nbformat.write(nb, tmp_path / "09_lab.ipynb")
    with pytest.raises(ValueError, match="09_lab.ipynb has a solution cell before its '## Your turn' section"):
        course.without_exercises(tmp_path / "09_lab.ipynb")


def test_make_lab_keeps_an_attendees_own_copy(tmp_path):
    """`make lab` writes the attendee copies with --keep: work an attendee saved in exercises/ survives it."""
    course.write_exercises(tmp_path)
    mine = tmp_path / course.notebooks()[0].name
    mine.write_text(mine.read_text().replace("# your code here", "answer = 42"))
    subprocess.run([sys.executable, "-m", "labkit", "exercises", "--out", str(tmp_path), "--keep"], check=True,
                   capture_output=True)
    assert "answer = 42" in mine.read_text()
    makefile = (paths.REPO / "Makefile").read_text()
    assert "labkit exercises --keep" in makefile and "jupyter lab exercises/" in makefile


def first_exercise(cells) -> int:
    return next(i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", []))


# What an attendee runs before their first turn is the lab's own first cells (the test above), and the
# session's course run executes every lab whole. So two blank copies run here, not all five: lab 00's (the Korean
# copy: lab 00 also runs whole in every language, tests/test_translations.py) shows that the written copies run
# under papermill and the course kernel; lab 04's, started in an empty runs folder, takes the path where lab 03
# was never run: it runs lab 03's flow itself, which lands on lab 03's cached outputs.
BLANK_RUNS = [("00_environment_check", "ko"), ("04_inference", None)]


@pytest.mark.notebook
@pytest.mark.parametrize("stem, lang", BLANK_RUNS)
def test_blank_copies_run_up_to_the_first_exercise(stem, lang, course_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path / "runs"))
    notebook = next(nb for nb in LABS_WITH_EXERCISES if nb.stem == stem)
    copy = course.write_exercises(tmp_path / "exercises", lang=lang)[course.notebooks().index(notebook)]
    nb = nbformat.read(copy, as_version=4)
    nb.cells = nb.cells[:first_exercise(nb.cells)]               # what an attendee runs before their first turn
    nbformat.write(nb, copy)
    light = LAB04_FEW_QUESTIONS if stem == "04_inference" else {}
    course.run_notebook(copy, tmp_path / "run", {**notebook_parameters(notebook), **light}, lang=lang)
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())[stem]
    assert nbformat.read(tmp_path / "run" / copy.name, as_version=4).metadata.get("labkit", {}).get("language") == lang
    if stem == "04_inference":
        executed = (tmp_path / "run" / copy.name).read_text()
        assert "no lab 03 output found" in executed, "the copy took the path where lab 03 never ran"
        assert recorded["model_dir"] == course_run.lab("03_olive_awq_lora")["onnx_dir"], \
            "the fallback is lab 03's own flow: with lab 03's settings it reuses lab 03's cached model"
    assert recorded, "the copy recorded its results"


def test_course_command_refuses_a_broken_parameters_file_before_running(tmp_path):
    import subprocess
    import sys

    broken = tmp_path / "parameters.json"
    broken.write_text('{"01_builder_quantization": {"runs": 1,}')
    run = subprocess.run([sys.executable, "-m", "labkit", "course", "--parameters", str(broken),
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "parameters.json is not valid JSON (line 1" in run.stderr and "NN_notebook" in run.stderr
    assert not (tmp_path / "run").exists(), "nothing ran"


def test_a_cold_cache_is_empty_but_for_the_downloads_and_goes_afterwards(tmp_path, monkeypatch):
    """`labkit course --cold-cache`: a first run's work, on a cache holding only what `make prefetch` brings."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    (tmp_path / "shadows" / "phi-3.5-mini").mkdir(parents=True)
    (tmp_path / "builds" / "tiny-int4").mkdir(parents=True)
    with course.cold_cache() as cold:
        assert paths.cache_dir() == cold and cold.parent == tmp_path
        assert sorted(p.name for p in cold.iterdir()) == ["shadows"]
        assert (cold / "shadows" / "phi-3.5-mini").is_dir()           # linked, not copied
        (cold / "builds").mkdir()
        (cold / "builds" / "model.onnx").write_bytes(b"x" * 1000)
        assert paths.dir_size(cold) == 1000                          # a lab's disk: the links are not walked
    assert paths.cache_dir() == tmp_path and not cold.exists()
    assert (tmp_path / "shadows" / "phi-3.5-mini").is_dir() and (tmp_path / "builds" / "tiny-int4").is_dir()


def test_a_cold_course_run_records_what_each_lab_wrote_to_the_cache(tmp_path, monkeypatch):
    """`labkit course --cold-cache` (make cpu-sheet): each lab's kernel sees the empty cache; its growth is recorded."""
    warm = tmp_path / "cache"
    warm.mkdir()
    monkeypatch.setenv("LABKIT_CACHE", str(warm))
    lab = write_notebook(tmp_path / "00_writes.ipynb", 'profile = "cpu"\nrun_dir = ""',
                         "import os, pathlib\n"
                         "pathlib.Path(os.environ['LABKIT_CACHE'], 'made.bin').write_bytes(b'x' * 5000)")
    monkeypatch.setattr(course, "notebooks", lambda lang=None: [lab])
    run_dir = course.run_course(run_dir=tmp_path / "run", cold=True)
    recorded = json.loads((run_dir / "results.json").read_text())["course"]
    assert recorded["cold_cache"] is True and recorded["cache_bytes"] == {"00_writes": 5000}
    assert sorted(p.name for p in warm.iterdir()) == ["shadows"]       # the cold cache and what it held are gone
