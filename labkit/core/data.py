"""The course's data: travel Q&A (JSONL), the general-text corpus and the sample images.

Taught in lab 03 (travel Q&A for fine-tuning) and lab 01 (held-out corpus text for perplexity).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import paths
from .errors import InputError, LabkitError

_REQUIRED_FIELDS = ("prompt", "response")


class DataError(LabkitError, ValueError):
    """A data file is malformed; the message names file:line and the fix. Lab 03."""


def read_utf8(path: Path) -> str:
    """A text file's content (UTF-8, with or without a BOM), or a DataError naming the line to fix. Lab 03.

    JSONL is UTF-8 by definition; editors on Windows save UTF-16 or a legacy code page."""
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path} is UTF-16 text; JSONL must be UTF-8. Save it as UTF-8 (in an editor: "
                        "Save As, encoding UTF-8) and run again.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: byte {raw[err.start]:#04x} is not UTF-8 (the file looks saved as "
                        "Latin-1 or Windows-1252). Save it as UTF-8 and run again.") from None


def validate_travel(path: Path) -> list[dict]:
    """Read a travel Q&A JSONL file, rejecting bad lines with `file:line: reason`. Lab 03.

    Every line must be a JSON object with non-empty string fields `prompt` and `response`.
    All problems are reported at once, so a user fixes the file in one go.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. The course's travel data lives in {paths.DATA / 'travel'}.")
    rows, problems = [], []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: expected a JSON object with 'prompt' and 'response', got {type(row).__name__}")
            continue
        for field in _REQUIRED_FIELDS:
            value = row.get(field)
            if value is None:
                problems.append(f"{where}: missing field '{field}'")
            elif not isinstance(value, str) or not value.strip():
                problems.append(f"{where}: field '{field}' must be a non-empty string")
        rows.append(row)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{len(problems)} problem(s) in {path.name}; fix these lines:\n  {shown}{more}")
    if not rows:
        raise DataError(f"{path}: no Q&A pairs found (one JSON object per line with 'prompt' and 'response').")
    return rows


def travel(split: str = "train") -> list[dict]:
    """The course's travel Q&A pairs (`train` or `eval`), validated. Lab 03."""
    if split not in ("train", "eval"):
        raise InputError(f"split must be 'train' or 'eval', not {split!r}")
    return validate_travel(paths.DATA / "travel" / f"{split}.jsonl")


def paraphrases(every: int = 1) -> list[dict]:
    """Travel questions worded unlike the training and eval prompts, with the fact a right answer states. Lab 03.

    `every` > 1 keeps a fixed random 1/every of them, for a quicker measurement. Random, not every n-th:
    the file cycles through cities, topics and wordings, and a stride would keep only some wordings.
    """
    return _every(validate_travel_questions(paths.DATA / "travel" / "paraphrase.jsonl"), every)


def followups(every: int = 1) -> list[dict]:
    """Two-turn travel chats: a paraphrased question, then a follow-up naming the city only as "there". Lab 04.

    Each row has `prompt` (turn 1, naming `city`), `followup` (turn 2, about `topic`) and the `fact` a right
    second answer states; both turns are worded unlike every training chat. `every` as in `paraphrases`.
    """
    return _every(validate_travel_questions(paths.DATA / "travel" / "followup.jsonl",
                                            ("prompt", "followup", "city", "fact")), every)


def cities() -> dict[str, dict]:
    """Each course city's facts (country, season, food, budget in US dollars, sight, tip), by name. Lab 04.

    The same facts the travel answers and the pre-training corpus state; lab 04's tool call looks them up."""
    rows = validate_travel_questions(paths.DATA / "travel" / "cities.jsonl", ("city", "country", "season"))
    return {row["city"]: row for row in rows}


def _every(rows: list[dict], every: int) -> list[dict]:
    """A fixed random 1/every of the rows, in file order (all of them for 1)."""
    if every < 1:
        raise InputError(f"every must be at least 1, not {every}")
    if every == 1:
        return rows
    keep = sorted(random.Random(0).sample(range(len(rows)), len(rows) // every))
    return [rows[i] for i in keep]


def validate_travel_questions(path: Path, fields: tuple[str, ...] = ("prompt", "city", "fact")) -> list[dict]:
    """Read a JSONL file of questions with `prompt`, `city` and `fact`; a bad line fails with file:line. Lab 03."""
    rows = []
    for number, line in enumerate(read_utf8(Path(path)).splitlines(), start=1):
        row = json.loads(line) if line.strip() else None
        if row is None:
            continue
        missing = [f for f in fields if not isinstance(row.get(f), str) or not row[f].strip()]
        if missing:
            raise DataError(f"{path}:{number}: missing or empty field(s) {missing}; regenerate it with "
                            "`python tools/make_data.py`.")
        rows.append(row)
    return rows


def corpus(split: str = "train") -> str:
    """General text: `train` pre-trains the tiny model, `heldout` measures perplexity. Lab 01."""
    if split not in ("train", "heldout"):
        raise InputError(f"split must be 'train' or 'heldout', not {split!r}")
    return (paths.DATA / "corpus" / f"{split}.txt").read_text(encoding="utf-8")


def images() -> list[Path]:
    """The sample images for the vision lab. Lab 02."""
    return sorted((paths.DATA / "images").glob("*.png"))


def chat_texts(tokenizer, rows: list[dict]) -> list[str]:
    """Travel pairs in the model's chat format: <|user|>…<|end|><|assistant|>…<|end|>. Lab 03."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                           {"role": "assistant", "content": r["response"]}], tokenize=False)
            for r in rows]
