"""Is a translation faithful and whole? Each translated text checked against its English one.

Markdown keeps its fenced blocks (only their `#` comments translated), inline code, link targets, headings and
table rows; a comment stays one line; a hint keeps its `{placeholders}`; and no sentence is left in English — a
language identifier (py3langid, a maintained packaging of langid.py's pre-trained model) reads each sentence of
six words or more outside code. `labkit translations --check` and the suite run it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .translations import CHECKS, COMMENT, catalogue_path, entries_by_context, is_current, read_catalogue

_FENCE = re.compile(r"^```[^\n]*\n.*?^```", re.S | re.M)
_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"\]\(([^)\s]+)[^)]*\)")
_HTML = re.compile(r"<[^>]+>")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)


def _fence_code(block: str) -> str:
    """A fenced block without its comments: translators translate a command's comment, never the command."""
    lines = block.splitlines()
    return "\n".join(re.sub(r"(^|\s)#(?!!).*$", "", line).rstrip() for line in lines).strip()


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a markdown text, without their comments. All labs."""
    return [_fence_code(block) for block in _FENCE.findall(markdown)]


def markdown_problems(english: str, translation: str) -> list[str]:
    """What a translated markdown cell changed that it must keep: fenced blocks (comments may be translated),
    inline code, link targets, heading levels, images and tables' shape. All labs."""
    found = []
    if code_blocks(english) != code_blocks(translation):
        found.append("a fenced code block differs from the English one (only its # comments may be translated)")
    en_rest, tr_rest = _FENCE.sub("", english), _FENCE.sub("", translation)
    en_spans = sorted(m.group(2).strip() for m in _SPAN.finditer(en_rest))
    tr_spans = sorted(m.group(2).strip() for m in _SPAN.finditer(tr_rest))
    if en_spans != tr_spans:
        missing = sorted(set(en_spans) - set(tr_spans))
        extra = sorted(set(tr_spans) - set(en_spans))
        found.append(f"inline code differs: missing {missing[:4]}, added {extra[:4]} (keep `code` exactly as in "
                     "English, as many times)")
    if sorted(_LINK.findall(en_rest)) != sorted(_LINK.findall(tr_rest)):
        found.append("a link target differs (translate the link text, keep the (target))")
    heads = [re.findall(r"^(#+) ", text, re.M) for text in (en_rest, tr_rest)]
    if heads[0] != heads[1]:
        found.append(f"headings differ: {heads[0]} in English, {heads[1]} here")
    rows = [len(re.findall(r"^\|", text, re.M)) for text in (en_rest, tr_rest)]
    if rows[0] != rows[1]:
        found.append(f"a table has {rows[1]} rows here and {rows[0]} in English")
    return found


def prose_sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell outside code, commands, math, HTML and link targets. All labs."""
    text = _FENCE.sub(" ", markdown)
    text = _SPAN.sub(" ", text)
    text = _MATH.sub(" ", text)
    text = _HTML.sub(" ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"[*_>#|\[\]]", " ", text)
    parts = re.split(r"(?<=[.!?;:])\s+|[。！？；：]|\n\s*\n|\n\s*[-*\d]+[.)]?\s", text)
    return [" ".join(p.split()) for p in parts if p and p.strip()]


_SCRIPT = {"zh": re.compile(r"[\u4e00-\u9fff]"), "ko": re.compile(r"[\uac00-\ud7af]")}


def english_sentences(markdown: str, lang: str) -> list[str]:
    """Sentences of a translated cell that a language identifier (py3langid, choosing between English and `lang`)
    reads as English: text left untranslated. Sentences of fewer than six words (names, figures) are not judged.
    All labs."""
    english = []
    for sentence in prose_sentences(markdown):
        words = re.findall(r"[A-Za-z][A-Za-z'’-]+", sentence)
        if len(words) < 6:
            continue
        if lang in _SCRIPT:
            if not _SCRIPT[lang].search(sentence):
                english.append(sentence)
            continue
        guess, probability = _identifier(lang).classify(sentence)
        if guess == "en" and probability >= 0.9:
            english.append(sentence)
    return english


_IDENTIFIERS: dict = {}


def _identifier(lang: str):
    """py3langid's pre-trained model, narrowed to English and `lang` (a development dependency: the suite)."""
    if lang not in _IDENTIFIERS:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        identifier.set_languages(["en", lang])
        _IDENTIFIERS[lang] = identifier
    return _IDENTIFIERS[lang]


def quality_problems(lang: str, notebooks_dir: Path | None = None) -> list[str]:
    """Every current translation of `lang` checked against its English: structure kept, no English sentence
    left, code comments one line each. `labkit translations --check`; the suite runs it. All labs."""
    import nbformat

    from .course import notebooks

    found = []
    for english in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")) if notebooks_dir else notebooks():
        lab = english.stem
        entries = entries_by_context(read_catalogue(catalogue_path(lang, lab)))
        cells = {c.id: c for c in nbformat.read(english, as_version=4).cells}
        for context, messages in entries.items():
            for m in messages:
                if not is_current(m, m.id):
                    continue
                where = f"{lang} {lab} {context}"
                if context.endswith(COMMENT):
                    if "\n" in m.string:
                        found.append(f"{where}: a comment's translation must be one line: {m.string!r}")
                    continue
                if context not in cells or cells[context].source != m.id:
                    continue
                found += [f"{where}: {why}" for why in markdown_problems(m.id, m.string)]
                found += [f"{where}: English left: {s!r}" for s in english_sentences(m.string, lang)]
    messages = {m.id: m.string for m in read_catalogue(catalogue_path(lang, CHECKS)) if m.id and m.string}
    for template, text in messages.items():
        want, got = sorted(re.findall(r"\{[^}]*\}", template)), sorted(re.findall(r"\{[^}]*\}", text))
        if want != got:
            found.append(f"{lang} checks: placeholders {got} differ from the English {want}: {template[:60]!r}")
    return found
