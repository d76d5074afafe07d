"""The course's data: travel Q&A (JSONL), the general-text corpus and the sample images.

Taught in lab 03 (travel Q&A for fine-tuning) and lab 01 (held-out corpus text for perplexity).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import paths

REQUIRED_FIELDS = ("prompt", "response")


class DataError(ValueError):
    """A data file is malformed; the message names file:line and the fix. Lab 03."""


def validate_travel(path: Path) -> list[dict]:
    """Read a travel Q&A JSONL file, rejecting bad lines with `file:line: reason`. Lab 03.

    Every line must be a JSON object with non-empty string fields `prompt` and `response`.
    All problems are reported at once, so a user fixes the file in one go.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found. The course's travel data lives in {paths.DATA / 'travel'}.")
    rows, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
        for field in REQUIRED_FIELDS:
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
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    return validate_travel(paths.DATA / "travel" / f"{split}.jsonl")


def corpus(split: str = "train") -> str:
    """General text: `train` pre-trains the tiny model, `heldout` measures perplexity. Lab 01."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    return (paths.DATA / "corpus" / f"{split}.txt").read_text(encoding="utf-8")


def images() -> list[Path]:
    """The sample images for the vision lab. Lab 02."""
    return sorted((paths.DATA / "images").glob("*.png"))
