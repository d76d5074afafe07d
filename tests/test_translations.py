"""The labs in Spanish, Portuguese, Chinese and Korean (labkit.translations): generated from the English ones, so
their code is the English code; every text translated, none left in English; a changed English text named stale
in every language (and shown with a note, never red); lab 00 run in each language; checks' hints in the language."""

import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from labkit.core import paths
from labkit.workshop import checks, course, translation_quality, translations
from labkit.workshop.translations import LANGUAGES

LANGS = list(LANGUAGES)
# Two messages of labkit.checks' lab 00 exercise (their English templates, as labkit.translations reads them).
PERPLEXITY_HINT = next(t for t in translations.check_templates() if "Perplexity is exp" in t)
PERPLEXITY_RIGHT = next(t for t in translations.check_templates() if "a uniform guess" in t)


@pytest.fixture(scope="module")
def generated():
    """Every lab in every language, made in memory from the English notebook and the catalogues."""
    return {(lang, nb.stem): translations.translate_notebook(nb, lang) for lang in LANGS for nb in course.notebooks()}


@pytest.mark.parametrize("lang", LANGS)
def test_code_cells_equal_the_english_ones(lang, generated):
    for english in course.notebooks():
        en = nbformat.read(english, as_version=4)
        translated, _ = generated[lang, english.stem]
        assert [(c.id, c.cell_type) for c in translated.cells] == [(c.id, c.cell_type) for c in en.cells]
        for mine, theirs in zip(translated.cells, en.cells):
            if theirs.cell_type == "code":
                assert translations.strip_comments(mine.source) == translations.strip_comments(theirs.source), \
                    f"{lang} {english.stem} cell {theirs.id}: code differs from English"
                assert len(translations.code_comments(mine.source)) >= len(translations.code_comments(theirs.source))
        assert translated.metadata["labkit"]["language"] == lang


@pytest.mark.parametrize("lang", LANGS)
def test_every_text_is_translated_and_none_is_left_in_english(lang, generated):
    missing = [str(p) for p in translations.problems([lang]) if p.state == "missing"]
    assert not missing, "missing translations (translations/README.md says how to add them):\n" + "\n".join(missing)
    for english in course.notebooks():
        translated, _ = generated[lang, english.stem]
        for mine, theirs in zip(translated.cells, nbformat.read(english, as_version=4).cells):
            if theirs.cell_type == "markdown" and translations.TAG not in mine.metadata.get("tags", []):
                assert mine.source != theirs.source, f"{lang} {english.stem} {theirs.id} is the English text"
    assert translation_quality.quality_problems(lang) == []


def test_the_language_check_finds_english_left_and_structure_changed():
    english = "Run `make course` first: see [the guide](docs/guide.md).\n\n```bash\nmake test   # all of it\n```\n"
    good = ("Ejecuta `make course` primero: consulta [la guía](docs/guide.md).\n\n"
            "```bash\nmake test   # todo\n```\n")
    assert translation_quality.markdown_problems(english, good) == []
    assert translation_quality.markdown_problems(english, good.replace("`make course`", "make course"))
    assert translation_quality.markdown_problems(english, good.replace("docs/guide.md", "docs/guia.md"))
    assert translation_quality.markdown_problems(english, good.replace("make test", "make tests"))
    left = "This sentence was never translated into Spanish at all."
    assert translation_quality.english_sentences(good + "\n" + left, "es") == [left]
    assert translation_quality.english_sentences("这句话没有翻译。 This sentence was never translated at all.", "zh")


def test_a_changed_english_text_is_named_stale_in_every_language_and_shown_with_a_note(tmp_path):
    for nb in course.notebooks():
        shutil.copy(nb, tmp_path)
    lab = tmp_path / "01_builder_quantization.ipynb"
    nb = nbformat.read(lab, as_version=4)
    markdown = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## "))
    markdown.source += "\nOne more English sentence."
    code = next(c for c in nb.cells if c.cell_type == "code" and translations.code_comments(c.source))
    code.source = "x_added_by_the_test = 1\n" + code.source      # code only: every language follows, nothing stale
    nbformat.write(nb, lab)

    found = translations.problems(notebooks_dir=tmp_path)
    stale = {(p.lang, p.cell) for p in found if p.state == "stale"}
    assert stale == {(lang, markdown.id) for lang in LANGS}, found
    assert not [p for p in found if p.state == "missing"]
    for lang in LANGS:
        translated, _ = translations.translate_notebook(lab, lang)
        cell = next(c for c in translated.cells if c.id == markdown.id)
        assert translations.STALE_MARKDOWN[lang] in cell.source and "> One more English sentence." in cell.source
        assert next(c for c in translated.cells if c.id == code.id).source.startswith("x_added_by_the_test = 1\n")

    # A changed comment is stale too (shown in English, with a note); a new cell has no translation: missing.
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("A new cell."))
    code.source = code.source.replace(translations.code_comments(code.source)[0].text, "a changed comment", 1)
    nbformat.write(nb, lab)
    found = translations.problems(["ko"], notebooks_dir=tmp_path)
    assert {(p.cell, p.state) for p in found} == {(markdown.id, "stale"), (code.id, "stale"),
                                                  (nb.cells[1].id, "missing")}
    translated, _ = translations.translate_notebook(lab, "ko")
    cell = next(c for c in translated.cells if c.id == code.id)
    assert "# a changed comment" in cell.source and translations.STALE_COMMENT["ko"] in cell.source


def test_update_marks_a_changed_text_fuzzy_for_translators(tmp_path, monkeypatch):
    monkeypatch.setattr(translations, "CATALOGUES", tmp_path / "translations")
    shutil.copytree(paths.REPO / "translations" / "es", tmp_path / "translations" / "es")
    english = course.notebooks()[0]
    monkeypatch.setattr(course, "notebooks", lambda lang=None: [tmp_path / english.name])
    nb = nbformat.read(english, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown")
    old = cell.source
    cell.source = old.replace("Lab 00", "Lab 00 (changed)")
    nbformat.write(nb, tmp_path / english.name)
    translations.update_catalogues(["es"])
    catalogue = translations.read_catalogue(translations.catalogue_path("es", english.stem))
    message = next(m for m in catalogue if m.context == cell.id)
    assert message.id == cell.source and "fuzzy" in message.flags
    path = translations.catalogue_path("es", english.stem)
    first = path.read_bytes()
    translations.update_catalogues(["es"])
    assert path.read_bytes() == first, "an update with nothing new changes nothing (a catalogue reads back whole)"
    assert message.string, "the old translation is kept for the translator"
    assert f"en-sha256: {translations.sha256(cell.source)}" in message.auto_comments


@pytest.mark.parametrize("lang", LANGS)
def test_checks_speak_the_notebooks_language(lang, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_LANG", lang)
    result = checks.uniform_perplexity(7, 32064)
    assert not result.ok
    translated = translations.message(PERPLEXITY_HINT, lang)
    assert translated != PERPLEXITY_HINT
    assert capsys.readouterr().out.strip() == "✗ " + translated.format(answer=7)


def test_the_language_comes_from_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_LANG", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert translations.current_language() == "en"
    notebook, _ = translations.translate_notebook(course.notebooks()[0], "pt")
    nbformat.write(notebook, tmp_path / "lab.ipynb")
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "lab.ipynb"))   # JupyterLab names the kernel's notebook
    assert translations.current_language() == "pt"
    monkeypatch.delenv("JPY_SESSION_NAME")
    (tmp_path / "zh").mkdir()
    monkeypatch.chdir(tmp_path / "zh")                                    # a kernel started in notebooks/zh/
    assert translations.current_language() == "zh"


def test_exercises_in_a_language_are_attendee_copies(tmp_path):
    written = course.write_exercises(tmp_path, lang="ko")
    assert [p.name for p in written] == [nb.name for nb in course.notebooks()]
    for path, english in zip(written, course.notebooks()):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["labkit"]["language"] == "ko"
        assert not [c for c in nb.cells if course.SOLUTION_TAG in c.metadata.get("tags", [])]
        trimmed = course.without_exercises(path)
        assert len(trimmed.cells) == len(course.without_exercises(english).cells), "the Korean heading is found"


def test_a_language_the_course_lacks_is_refused_before_any_work(tmp_path):
    run = subprocess.run([sys.executable, "-m", "labkit", "course", "--lang", "fr", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no 'fr' translation" in run.stderr and "es (Español)" in run.stderr
    assert not (tmp_path / "r").exists()


def _readme_parts(text: str) -> list[str]:
    return translation_quality.code_blocks(text)


@pytest.mark.parametrize("lang", LANGS)
def test_the_readme_in_each_language(lang):
    english = (paths.REPO / "README.md").read_text(encoding="utf-8")
    assert f"](README.{lang}.md)" in english
    readme = (paths.REPO / f"README.{lang}.md").read_text(encoding="utf-8")
    if not translations.readme_problems(lang):   # translated from today's English: the same commands
        want = [re.sub(r"\bes\b", lang, block) for block in _readme_parts(translations.readme_source(english))]
        assert _readme_parts(readme) == want, "code blocks equal the English ones (comments aside)"
    changed = english.replace("## Running a workshop\n", "## Running a workshop\n\nA new English sentence.\n")
    assert [p.state for p in translations.readme_problems(lang, changed)] == ["stale"]
    assert "](README.md)" in readme
    for target in re.findall(r"\]\(([^)#\s]+)", readme):
        if not target.startswith("http"):
            assert (paths.REPO / target).exists(), f"README.{lang}.md links to a missing {target}"
    assert translation_quality.english_sentences(readme, lang) == [], f"English left in README.{lang}.md"


@pytest.mark.notebook
@pytest.mark.parametrize("lang", LANGS)
def test_lab_00_runs_in_each_language(lang, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path / "runs"))
    lab = translations.write_translated(lang, tmp_path / lang)[0]
    executed = course.run_notebook(lab, tmp_path / "run", lang=lang)
    nb = nbformat.read(executed, as_version=4)
    assert nb.metadata["labkit"]["language"] == lang
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "ready for the course" in outputs
    translated = translations.message(PERPLEXITY_RIGHT, lang)
    assert max(re.split(r"\{[^}]*\}", translated), key=len) in outputs, "the check's ✓ line is in the language"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["00_environment_check"]


def test_the_translations_command_lists_and_writes(tmp_path, monkeypatch):
    run = subprocess.run([sys.executable, "-m", "labkit", "translations", "--lang", "ko", "--write"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "ko: 6 labs in" in run.stdout and "0 missing translations in ko" in run.stdout
    assert len(list((paths.NOTEBOOKS / "ko").glob("0*.ipynb"))) == 6
    wrong = subprocess.run([sys.executable, "-m", "labkit", "translations", "--lang", "fr"],
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "no 'fr' translation" in wrong.stderr
