"""Notebooks are committed clean: no outputs, one parameters cell papermill can read, no input()."""

import ast
import re

import nbformat
import papermill
import pytest
from parameters import TEST_PARAMETERS

from labkit import course

NOTEBOOKS = course.notebooks()


def test_there_are_notebooks():
    assert [nb.name[:2] for nb in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown", "start with what / why / how long"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    source = "\n".join(c.source for c in code)
    assert not re.search(r"\binput\(", source)
    assert not re.search(r"['\"]/(root|home|tmp|work|Users)/", source), "no absolute machine paths"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets}
    parsed = set(papermill.inspect_notebook(str(path)))
    assert assigned == parsed, "papermill cannot parse some parameter lines (one '=' per line, comments included)"
    assert {"profile", "run_dir"} <= parsed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_test_and_demo_parameters_name_real_parameters(path):
    known = set(papermill.inspect_notebook(str(path)))
    for name, table in (("TEST_PARAMETERS", TEST_PARAMETERS), ("DEMO_PARAMETERS", course.DEMO_PARAMETERS),
                        ("COURSE_PARAMETERS", course.COURSE_PARAMETERS)):
        extra = set(table.get(path.stem, {})) - known
        assert not extra, f"{name} names unknown parameters {extra}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_an_id(path):
    """nbformat 4.5 cells carry ids; a cell added without one is a warning today and an error tomorrow."""
    import json
    cells = json.loads(path.read_text())["cells"]
    assert all("id" in cell for cell in cells), "run nbformat.validator.normalize on the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_open_with_the_kernel_make_lab_registers(path):
    from labkit import paths
    kernelspec = nbformat.read(path, as_version=4).metadata["kernelspec"]
    assert kernelspec["name"] == "labkit" and kernelspec["display_name"] == "Python (labkit)"
    installer = (paths.REPO / "tools" / "install.py").read_text()
    assert '("labkit", "Python (labkit)")' in installer, "make install registers that kernel"
