import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from labkit import course, paths
from labkit.core.profiles import get_profile


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
    assert results == {"05_results": {"variants": 3}}
    assert nbformat.read(out, 4).cells[1].source.find("steps = 3") >= 0   # papermill's injected cell


def test_new_run_dirs_are_separate_and_latest_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))
    a, b = paths.new_run_dir(), paths.new_run_dir()
    assert a != b and a.parent == b.parent == tmp_path
    assert (tmp_path / "latest").resolve() == b


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
    assert course.cell_timeout("cpu") <= 600, "a hung tiny-model cell fails within minutes"
    assert course.cell_timeout("gpu") >= 3600, "real-size builds and exports on a GPU take long"


def test_headless_runs_save_finished_text_progress_bars(tmp_path):
    nb = write_notebook(tmp_path / "bars.ipynb", 'profile = "cpu"\nrun_dir = ""',
                        "import labkit\nlab = labkit.start_lab('bars', profile, run_dir)\n"
                        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='work'):\n    pass")
    executed = course.run_notebook(nb, tmp_path / "run")
    text = executed.read_text()
    assert "application/vnd.jupyter.widget-view+json" not in text, "no widget placeholder to freeze at 0%"
    assert "work: 100%" in text
