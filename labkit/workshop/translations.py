"""The labs in Spanish, Portuguese, Simplified Chinese and Korean, generated from the English ones.

English is the one source of truth. Each language has a catalogue per lab, `translations/<lang>/<lab>.po`
(gettext's format, read and written with Babel: Poedit, Weblate and `msgmerge` all open it), holding

- one entry per markdown cell: context = the cell's id, msgid = the English cell, msgstr = its translation;
- one entry per comment of a code cell: context = `<cell id>#comment`, msgid = the English comment.

Every entry also records the SHA-256 of the English text it translates (`#. en-sha256: …`). The translated
notebook is the English notebook with those texts swapped in, so a code change reaches every language with no
hand edit. When an English text changes after its translation, the entry is **stale**: the notebook keeps the
old translation and shows, in the attendee's language, that the English changed, with the English beside it
(`labkit translations --update` then marks the entry fuzzy for the translator; `git log -p` of the notebook
shows what changed). A cell with no entry at all is **missing**: `labkit translations` lists both, and the suite fails
on a missing one only.

`labkit.checks` prints its ✓ and hint lines in the notebook's language (`translations/<lang>/checks.po`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from ..core.errors import LabkitError

LANGUAGES = {"es": "Español", "pt": "Português", "zh": "简体中文", "ko": "한국어"}
CATALOGUES = paths.REPO / "translations"
COMMENT = "#comment"                      # context suffix of a code comment's entry
CHECKS = "checks"                         # the catalogue of labkit.checks' messages
TAG = "translation-stale"                 # cell tag of a cell shown with the English-changed note

# What a stale cell says, in its language: the English text changed after this translation.
STALE_MARKDOWN = {
    "es": "⚠️ **El texto original en inglés de esta celda cambió después de traducirla.** La traducción de arriba "
          "puede estar desactualizada; este es el texto en inglés actual:",
    "pt": "⚠️ **O texto original em inglês desta célula mudou depois de ser traduzido.** A tradução acima pode "
          "estar desatualizada; este é o texto atual em inglês:",
    "zh": "⚠️ **本单元格的英文原文在翻译之后有改动。** 上面的译文可能已过时；以下是当前的英文原文：",
    "ko": "⚠️ **이 셀의 영어 원문이 번역 이후에 바뀌었습니다.** 위 번역은 최신이 아닐 수 있습니다. 현재 영어 원문은 "
          "다음과 같습니다:",
}
STALE_COMMENT = {
    "es": "⚠️ Algunos comentarios de esta celda cambiaron en inglés y se muestran en inglés hasta que se traduzcan.",
    "pt": "⚠️ Alguns comentários desta célula mudaram em inglês e aparecem em inglês até serem traduzidos.",
    "zh": "⚠️ 本单元格的部分注释在英文版中有改动，翻译更新前以英文显示。",
    "ko": "⚠️ 이 셀의 일부 주석이 영어판에서 바뀌어, 번역될 때까지 영어로 표시됩니다.",
}
# Lines the translation must never touch: tool directives, not prose.
_DIRECTIVE = re.compile(r"#\s*(noqa|type:|pragma|fmt:|ruff:|!)")


def sha256(text: str) -> str:
    """The SHA-256 of a text, as the catalogues record the English they translate. All labs."""
    return hashlib.sha256(text.encode()).hexdigest()


def check_language(lang: str) -> str:
    """`lang`, or a clear error naming the languages there are. All labs."""
    if lang not in LANGUAGES:
        choices = ", ".join(f"{code} ({name})" for code, name in LANGUAGES.items())
        raise LabkitError(f"There is no {lang!r} translation of the course. Languages: {choices}; English is the "
                          "default (no COURSE_LANG).")
    return lang


# ------------------------------------------------------------------ the texts of a notebook
@dataclass(frozen=True)
class Comment:
    """One `#` comment of a code cell: its line, its column, and its text after `# `. All labs."""

    line: int
    column: int
    prefix: str
    text: str


def code_comments(source: str) -> list[Comment]:
    """The comments of a code cell, as Python's tokenizer finds them (IPython's `%` and `!` lines skipped). All labs."""
    lines = source.splitlines(keepends=True)
    python = "".join("\n" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(python).readline):
            if token.type == tokenize.COMMENT and not _DIRECTIVE.match(token.string):
                prefix = re.match(r"#+\s*", token.string).group(0)
                if token.string[len(prefix):].strip():
                    found.append(Comment(token.start[0] - 1, token.start[1], prefix, token.string[len(prefix):]))
    except (tokenize.TokenError, IndentationError, SyntaxError) as err:
        raise LabkitError(f"A code cell could not be tokenized ({err}); the translations need valid Python "
                          f"cells:\n{source}") from None
    return found


def with_comments(source: str, comments: list[Comment], texts: list[str]) -> str:
    """`source` with each comment's text replaced by the matching one of `texts`; the code unchanged. All labs."""
    lines = source.splitlines(keepends=True)
    for comment, text in sorted(zip(comments, texts), key=lambda pair: (pair[0].line, -pair[0].column),
                                reverse=True):
        line = lines[comment.line]
        end = len(line.rstrip("\r\n"))
        lines[comment.line] = line[:comment.column] + comment.prefix + text.replace("\n", " ") + line[end:]
    return "".join(lines)


def strip_comments(source: str) -> str:
    """The code of a cell without its comments (and trailing spaces): what must equal across languages. All labs."""
    comments = code_comments(source)
    lines = source.splitlines()
    for comment in sorted(comments, key=lambda c: (c.line, -c.column), reverse=True):
        lines[comment.line] = lines[comment.line][:comment.column]
    return "\n".join(line.rstrip() for line in lines).strip()


def english_texts(notebook) -> list[tuple[str, str]]:
    """(context, English text) of every translatable text of a notebook, in order. All labs."""
    texts = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            texts.append((cell.id, cell.source))
        elif cell.cell_type == "code":
            texts += [(cell.id + COMMENT, c.text) for c in code_comments(cell.source)]
    return texts


# ------------------------------------------------------------------ catalogues
def catalogue_path(lang: str, name: str) -> Path:
    """The catalogue of lab (or `checks`) `name` in `lang`: translations/<lang>/<name>.po. All labs."""
    return CATALOGUES / lang / f"{name}.po"


def read_catalogue(path: Path):
    """A Babel catalogue, or an empty one where the file does not exist yet. All labs."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    if not path.exists():
        return Catalog(locale=path.parent.name, project="Phi on-device lab")
    try:
        with path.open("rb") as f:
            catalogue = read_po(f, locale=path.parent.name, abort_invalid=True)
    except Exception as err:  # Babel raises PoFileError or ValueError on a damaged file
        raise LabkitError(f"{path} is not a valid PO file ({err}). Fix the line it names (a translation editor "
                          "such as Poedit shows it), or restore it with git.") from None
    for message in catalogue:        # a previous msgid ("#|", from an editor) as Babel misreads it: not kept
        message.user_comments = [c for c in message.user_comments if not c.startswith("|")]
    return catalogue


def new_catalogue(lang: str, old=None):
    """An empty catalogue for `lang`, keeping an existing one's dates (an update changes only what changed).
    All labs."""
    from babel.messages.catalog import Catalog

    dates = {"creation_date": old.creation_date, "revision_date": old.revision_date} if old is not None else {}
    return Catalog(locale=lang, project="Phi on-device lab", version="1", fuzzy=False,
                   header_comment=f"# {LANGUAGES[lang]}: the Phi on-device lab's labs. Made by "
                                  "`python -m labkit translations --update`; see translations/README.md.", **dates)


def write_catalogue(catalogue, path: Path) -> None:
    """Write a catalogue atomically (a temporary file, then a rename): never half a PO file. All labs."""
    from babel.messages.pofile import write_po

    buffer = io.BytesIO()
    # No "#| msgid" lines: Babel's reader takes them for translator comments and its writer then breaks them.
    write_po(buffer, catalogue, width=0, sort_output=False, include_previous=False, omit_header=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def entries_by_context(catalogue) -> dict[str, list]:
    """Translated entries by context (a code cell's comments share one context). All labs."""
    by_context: dict[str, list] = {}
    for message in catalogue:
        if message.id and message.string and message.context:
            by_context.setdefault(message.context, []).append(message)
    return by_context


def is_current(message, english: str) -> bool:
    """Does `message` translate exactly `english`, and is it not marked fuzzy? All labs."""
    return message.id == english and "fuzzy" not in message.flags


# ------------------------------------------------------------------ translating a notebook
@dataclass(frozen=True)
class Problem:
    """A cell whose translation is stale (English changed) or missing. All labs."""

    lang: str
    lab: str
    cell: str
    state: str      # "stale" or "missing"
    english: str

    def __str__(self) -> str:
        first = self.english.strip().splitlines()[0] if self.english.strip() else ""
        return f"{self.lang} {self.lab} cell {self.cell}: {self.state} — {first[:70]}"


def translate_notebook(english_path: Path, lang: str):
    """The English notebook at `english_path` in `lang`, and the problems found; code cells keep their code.
    All labs."""
    import nbformat

    from .course import EXERCISES_HEADING, EXERCISES_TAG

    check_language(lang)
    notebook = nbformat.read(english_path, as_version=4)
    lab = english_path.stem
    entries = entries_by_context(read_catalogue(catalogue_path(lang, lab)))
    problems = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            if cell.source.startswith(EXERCISES_HEADING):   # the translated heading still marks the exercises
                cell.metadata.setdefault("tags", []).append(EXERCISES_TAG)
            found = entries.get(cell.id, [])
            current = [m for m in found if is_current(m, cell.source)]
            if current:
                cell.source = current[0].string
            elif found:
                problems.append(Problem(lang, lab, cell.id, "stale", cell.source))
                english = "\n".join("> " + line if line else ">" for line in cell.source.splitlines())
                cell.source = f"{found[0].string}\n\n---\n{STALE_MARKDOWN[lang]}\n\n{english}"
                cell.metadata.setdefault("tags", []).append(TAG)
            else:
                problems.append(Problem(lang, lab, cell.id, "missing", cell.source))
        elif cell.cell_type == "code":
            comments = code_comments(cell.source)
            if not comments:
                continue
            found = {m.id: m for m in entries.get(cell.id + COMMENT, [])}
            texts = [found[c.text].string if c.text in found and is_current(found[c.text], c.text) else None
                     for c in comments]
            if all(t is not None for t in texts):
                cell.source = with_comments(cell.source, comments, texts)
            elif found:
                problems.append(Problem(lang, lab, cell.id, "stale", cell.source))
                cell.source = with_comments(cell.source, comments, [t or c.text for t, c in zip(texts, comments)])
                cell.source = cell.source.rstrip("\n") + f"\n# {STALE_COMMENT[lang]}"
                cell.metadata.setdefault("tags", []).append(TAG)
            else:
                problems.append(Problem(lang, lab, cell.id, "missing", cell.source))
    notebook.metadata["labkit"] = {"language": lang, "english": f"notebooks/{english_path.name}",
                                   "english_sha256": sha256(english_path.read_text(encoding="utf-8"))}
    return notebook, problems


def problems(langs: list[str] | None = None, notebooks_dir: Path | None = None) -> list[Problem]:
    """Every stale or missing translation of every lab (and of labkit.checks' messages), in `langs` (all). All labs."""
    from .course import notebooks

    found = []
    for lang in langs or list(LANGUAGES):
        for notebook in (sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")) if notebooks_dir else notebooks()):
            found += translate_notebook(notebook, lang)[1]
        found += check_messages_problems(lang)
        found += readme_problems(lang)
    return found


# ------------------------------------------------------------------ the README's translated parts
README_MARK = re.compile(r"<!-- translated from README\.md, en-sha256 ([0-9a-f]{64})")


def readme_source(english: str | None = None) -> str:
    """The parts of README.md that README.<lang>.md translates: the quick start (up to the table of make targets)
    and the section "Running a workshop". All labs."""
    english = english if english is not None else (paths.REPO / "README.md").read_text(encoding="utf-8")
    start = english.index("Every target, and the plain command")
    workshop = english[english.index("## Running a workshop"):english.index("## GPU runner")]
    return english[:start] + workshop


def readme_problems(lang: str, english: str | None = None) -> list[Problem]:
    """README.<lang>.md missing, or translated from other English than today's (the hash in its first line).
    All labs."""
    source = readme_source(english)
    path = paths.REPO / f"README.{lang}.md"
    if not path.exists():
        return [Problem(lang, path.name, "file", "missing", source)]
    found = README_MARK.search(path.read_text(encoding="utf-8"))
    if not found or found.group(1) != sha256(source):
        return [Problem(lang, path.name, "file", "stale", source)]
    return []


def write_translated(lang: str, out: Path | None = None) -> list[Path]:
    """Generate the six labs in `lang` into `notebooks/<lang>/` (or `out`); stale cells carry their note. All labs."""
    import nbformat

    from .course import notebooks

    check_language(lang)                                      # before any folder is made
    out = Path(out) if out else paths.NOTEBOOKS / lang         # not committed: made from the catalogues
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for english in notebooks():
        notebook, _ = translate_notebook(english, lang)
        path = out / english.name
        tmp = path.with_name(f".{path.name}.tmp")
        nbformat.write(notebook, tmp)
        tmp.replace(path)
        written.append(path)
    return written


def update_catalogues(langs: list[str] | None = None) -> list[Path]:
    """Bring each catalogue in line with the English labs for its translators: new texts added untranslated,
    changed ones marked fuzzy (their old translation kept), texts that no longer exist dropped. All labs."""
    import nbformat

    from .course import notebooks

    written = []
    for lang in langs or list(LANGUAGES):
        for english in notebooks():
            lab = english.stem
            path = catalogue_path(lang, lab)
            existing = read_catalogue(path)
            old = entries_by_context(existing)
            new = new_catalogue(lang, existing if path.exists() else None)
            texts = english_texts(nbformat.read(english, as_version=4))
            for context, text in texts:
                found = old.get(context, [])
                same = [m for m in found if m.id == text]
                if context.endswith(COMMENT):
                    # A comment changed in place: the entry of the comment no longer in the cell is its old text.
                    now = {t for c, t in texts if c == context}
                    gone = [m for m in found if m.id not in now]
                    source = same[0] if same else (gone[0] if gone else None)
                else:
                    source = same[0] if same else (found[0] if found else None)
                if any(m.id == text and m.context == context for m in new):
                    continue
                flags = set(source.flags) if source else set()
                if source and source.id != text:
                    flags.add("fuzzy")
                new.add(text, source.string if source else "", context=context, flags=flags,
                        auto_comments=[f"en-sha256: {sha256(text)}"])
            write_catalogue(new, path)
            written.append(path)
        written.append(_update_check_messages(lang))
    return written


# ------------------------------------------------------------------ labkit.checks' messages
def check_templates() -> list[str]:
    """Every message template `labkit.checks` passes to `say`, read from its source (one place to add one). All labs."""
    import ast

    from . import checks

    tree = ast.parse(Path(checks.__file__).read_text(encoding="utf-8"))
    return [node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "say"
            and node.args and isinstance(node.args[0], ast.Constant)]


def check_messages_problems(lang: str) -> list[Problem]:
    """The messages of labkit.checks with no current translation in `lang`: stale where the catalogue still holds
    a message that is gone (its English was edited), missing where nothing stands for it. All labs."""
    entries = {m.id: m for m in read_catalogue(catalogue_path(lang, CHECKS)) if m.id and m.string}
    templates = check_templates()
    edited = len(set(entries) - set(templates))
    problems = []
    for template in templates:
        if template in entries and "fuzzy" not in entries[template].flags:
            continue
        state = "stale" if template in entries or edited else "missing"
        edited -= template not in entries
        problems.append(Problem(lang, CHECKS, "message", state, template))
    return problems


def _update_check_messages(lang: str) -> Path:
    """Like `update_catalogues` for labkit.checks' messages: a message whose English was edited takes the
    translation of the one that went (in order), marked fuzzy."""
    path = catalogue_path(lang, CHECKS)
    existing = read_catalogue(path)
    old = {m.id: m for m in existing if m.id}
    templates = list(dict.fromkeys(check_templates()))
    gone = iter([m for m in old.values() if m.id not in templates])
    new = new_catalogue(lang, existing if path.exists() else None)
    for template in templates:
        source = old.get(template) or next(gone, None)
        flags = set(source.flags) if source else set()
        if source and source.id != template:
            flags.add("fuzzy")
        new.add(template, source.string if source else "", flags=flags,
                auto_comments=[f"en-sha256: {sha256(template)}"])
    write_catalogue(new, path)
    return path


_MESSAGES: dict[str, dict[str, str]] = {}


def message(template: str, lang: str | None = None) -> str:
    """`template` in `lang` (default: the notebook's language); English where it has no current translation.
    All labs."""
    lang = lang or current_language()
    if lang == "en":
        return template
    if lang not in _MESSAGES:
        _MESSAGES[lang] = {m.id: m.string for m in read_catalogue(catalogue_path(lang, CHECKS))
                           if m.id and m.string and "fuzzy" not in m.flags}
    return _MESSAGES[lang].get(template, template)


# ------------------------------------------------------------------ which language a lab runs in
def notebook_language(path: str | Path) -> str | None:
    """The language a generated notebook records (`metadata.labkit.language`), or None. All labs."""
    import json

    try:
        lang = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {}).get("labkit", {}).get("language")
    except (OSError, ValueError):
        return None
    return lang if lang in LANGUAGES else None


def current_language() -> str:
    """The language of the notebook this kernel runs: `COURSE_LANG` where set (`make course COURSE_LANG=es`
    sets it for its kernels), else the notebook JupyterLab opened (its `JPY_SESSION_NAME`), else the folder the
    kernel started in (`notebooks/es/`, `exercises/es/`), else English. All labs."""
    chosen = os.environ.get("COURSE_LANG", "").strip()
    if chosen:
        return chosen if chosen in LANGUAGES else "en"
    session = os.environ.get("JPY_SESSION_NAME")   # a full path, or the path from the server's root folder
    if session and (lang := notebook_language(session) or notebook_language(Path.cwd() / Path(session).name)):
        return lang
    folder = Path.cwd().name
    return folder if folder in LANGUAGES else "en"
