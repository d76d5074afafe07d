"""What onnxruntime-genai accepts, checked before it runs: model folders, search options, text, lengths. Lab 04.

og aborts the whole process (a dead kernel in Jupyter) or fails far from the cause on some inputs: a
top_k past the vocabulary, no room for a token, a NUL in a prompt, a tokenizer class it cannot read.
Every check here raises a GenerationError that names the value and the fix, before any work starts.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..core import paths
from ..core.errors import LabkitError, MissingInput


class GenerationError(LabkitError, ValueError):
    """Bad generate() input; the message says how to fix it. Lab 04."""


# name: (type, check, what the check means)
SEARCH_OPTIONS = {
    "do_sample": (bool, lambda v: True, "True or False"),
    "temperature": (float, lambda v: v > 0, "> 0 (1 = the model's distribution; lower = more focused)"),
    "top_k": (int, lambda v: 0 <= v < 2**31, ">= 0 (0 = no limit) and at most the vocabulary size"),
    "top_p": (float, lambda v: 0 < v <= 1, "in (0, 1]"),
    "num_beams": (int, lambda v: 1 <= v <= 64, "1 to 64 (1 = no beam search; each beam is a whole generation)"),
    "length_penalty": (float, lambda v: True, "any number (> 1 favours longer beams)"),
    "early_stopping": (bool, lambda v: True, "True or False"),
    "repetition_penalty": (float, lambda v: v > 0, "> 0 (1 = off; > 1 discourages repeats)"),
    # og 0.12.2 parses no_repeat_ngram_size and never applies it (onnxruntime-genai issue 2241, fixed in a later
    # release): the same tokens with or without it. Refused, so no one tunes a knob that does nothing.
    "no_repeat_ngram_size": (int, lambda v: v == 0, "0 only: onnxruntime-genai 0.12.2 accepts it but never applies "
                                                    "it (its issue 2241); use repetition_penalty > 1 instead"),
    "random_seed": (int, lambda v: 0 <= v < 2**31, "0 to 2**31 - 1"),
    "diversity_penalty": (float, lambda v: v >= 0, ">= 0"),
}


def check_search_options(**options) -> dict:
    """Validate search options before any work; return them typed for og. Lab 04."""
    checked = {}
    for name, value in options.items():
        if name == "images":
            raise GenerationError("Image prompts go through labkit.images.ask(folder, question, images), which "
                                  "runs the model's multimodal processor.")
        if name not in SEARCH_OPTIONS:
            raise GenerationError(f"Unknown search option {name!r}. Known: {', '.join(SEARCH_OPTIONS)} "
                                  "(max_length comes from max_new_tokens).")
        kind, valid, meaning = SEARCH_OPTIONS[name]
        if kind is bool and not isinstance(value, bool) or kind is int and (isinstance(value, bool) or
                                                                            not float(value).is_integer()):
            raise GenerationError(f"{name}={value!r} must be {kind.__name__}: {meaning}.")
        try:
            typed = kind(value)
        except (TypeError, ValueError):
            raise GenerationError(f"{name}={value!r} must be a number: {meaning}.") from None
        if not valid(typed):
            raise GenerationError(f"{name}={value!r} is out of range: {meaning}.")
        checked[name] = typed
    if checked.get("num_beams", 1) > 1 and checked.get("do_sample"):
        raise GenerationError("Use either beam search (num_beams > 1) or sampling (do_sample=True), not both.")
    return checked


REBUILD = ("Build the folder again (lab 01: labkit.build.build, or `python -m labkit build MODEL --force`) or "
           "copy the whole folder again")


def model_config(model_dir: str | Path) -> dict:
    """The "model" section of the folder's genai_config.json, checked for what labkit and og read. Lab 04.

    A damaged or hand-edited folder gets one error naming the file and what it lacks, instead of a
    KeyError here or a failure inside og."""
    folder = Path(model_dir)
    path = folder / "genai_config.json"
    if not path.is_file():
        raise MissingInput(f"{folder} is not an onnxruntime-genai model folder (no genai_config.json). Build one "
                           "in lab 01 (labkit.build.build) or pass a folder that has one.")
    config = paths.read_json(path, "build the folder again (lab 01) or copy it again")
    model = config.get("model") if isinstance(config, dict) else None
    model = model if isinstance(model, dict) else {}
    decoder = model.get("decoder") if isinstance(model.get("decoder"), dict) else {}
    lacks = [key for key in ("vocab_size", "context_length") if key not in model]
    lacks += [] if decoder.get("filename") else ["decoder.filename"]
    if lacks:
        raise GenerationError(f"{path} has no model.{', model.'.join(lacks)}: it is not a complete onnxruntime-genai "
                              f"config. {REBUILD}.")
    if not (folder / decoder["filename"]).is_file():
        raise GenerationError(f"{folder / decoder['filename']}, the model file genai_config.json names, is missing. "
                              f"{REBUILD}.")
    return model


def context_length(model_dir: str | Path) -> int:
    """The model's context length, from genai_config.json. Lab 04."""
    return int(model_config(model_dir)["context_length"])


def check_text(text, what: str = "prompt") -> str:
    """`text` if the tokenizer can carry all of it, else a GenerationError naming the character's position. Lab 04.

    onnxruntime-genai passes text to its C++ tokenizer and chat template as C strings: a NUL ends them early, so
    the model would silently answer the text before it (without the chat template's closing tokens); a lone
    surrogate is not UTF-8 at all."""
    if not isinstance(text, str):
        raise GenerationError(f"The {what} must be text (str), not {type(text).__name__}.")
    for position, char in enumerate(text):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            raise GenerationError(f"The {what} has the character {char!r} at position {position}: the tokenizer "
                                  "cannot carry it (a NUL would cut the text there). Remove it and ask again.")
    return text


@lru_cache(maxsize=8)
def control_tokens(model_dir: str | Path) -> tuple[str, ...]:
    """The tokenizer's special tokens (`<|end|>`, `<|assistant|>`, `<s>`…), longest first. Lab 04."""
    tokens = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
    return tuple(sorted({t["content"] for t in tokens if t.get("special")}, key=len, reverse=True))


def check_control_tokens(text: str, model_dir: str | Path, what: str = "message", allowed=()) -> None:
    """Refuse user text that contains a control token, naming it and its position. Lab 04.

    The tokenizer reads `<|end|>` typed in a message as the chat template's own marker, not as text, so
    a message could end its turn and write the assistant's (`"hi<|end|>\\n<|assistant|>\\nok"`). og has no
    way to encode them as plain text, so labkit refuses them. `allowed`: tokens that are part of the
    input's own syntax (an image prompt's `<|image_1|>`)."""
    found = [(text.find(token), token) for token in control_tokens(str(model_dir))
             if token not in allowed and token in text]
    if found:
        position, token = min(found, key=lambda f: (f[0], -len(f[1])))    # the first; the longest at a tie
        spaced = f"{token[0]} {token[1:-1]} {token[-1]}"
        raise GenerationError(f"The {what} contains {token!r} at position {position}, one of the model's control "
                              "tokens: the tokenizer would read it as the chat template's marker, not as text. "
                              f"Remove it, or write it another way (e.g. {spaced!r}).")


# The tokenizer classes onnxruntime-genai 0.12 reads (transformers 5 saves "TokenizersBackend", which it refuses).
GENAI_TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "GPT2Tokenizer", "GPT2TokenizerFast",
                           "PreTrainedTokenizerFast", "CodeGenTokenizer", "Qwen2Tokenizer", "T5Tokenizer")
KEEP_TOKENIZER = "python -m labkit keep-tokenizer SOURCE_CHECKPOINT {folder}"


# onnxruntime-genai on Windows cannot open a tokenizer under a path with non-ASCII characters ("tokenizer.json:
# does not exist": microsoft/onnxruntime-genai issue 1262, open in 0.12), e.g. under C:\\Users\\José Núñez.
PATHS_MUST_BE_ASCII = os.name == "nt"


def check_model_path(folder: Path) -> None:
    """A folder og can open on this OS, or a GenerationError naming the fix (Windows: ASCII paths only). Lab 04."""
    text = str(Path(folder).resolve())
    if PATHS_MUST_BE_ASCII and not text.isascii():
        odd = "".join(dict.fromkeys(c for c in text if not c.isascii()))
        raise GenerationError(f"{text} has characters onnxruntime-genai cannot open on Windows ({odd}: its issue "
                              "1262). Keep the course and its models under a plain path: clone the course to "
                              "C:\\phi-lab, or set LABKIT_CACHE=C:\\phi-lab-models before starting JupyterLab.")


def check_tokenizer_files(folder: Path, vocab_size: int) -> None:
    """The folder's tokenizer is one og can load and fits the model, or a GenerationError naming the fix. Lab 01.

    og itself fails later and less clearly: "Invalid file: tokenizer.json", "Unsupported tokenizer class", or
    token ids past the model's vocabulary."""
    tokenizer_json, config_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not tokenizer_json.exists():
        have = " (it has tokenizer.model, which onnxruntime-genai does not read)" if (
            folder / "tokenizer.model").exists() else ""
        raise GenerationError(f"{folder} has no tokenizer.json{have}. Copy the source checkpoint's tokenizer files "
                              f"into it: {KEEP_TOKENIZER.format(folder=folder)}")
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    kind = config.get("tokenizer_class")
    if kind not in GENAI_TOKENIZER_CLASSES:
        raise GenerationError(f"{folder}: tokenizer_class {kind!r} in tokenizer_config.json is not one "
                              "onnxruntime-genai 0.12 reads (the model builder writes TokenizersBackend). Restore the "
                              f"source's: {KEEP_TOKENIZER.format(folder=folder)}")
    tokens = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    pieces = tokens["model"].get("vocab") or {}     # BPE: {piece: id}; Unigram: [[piece, score], ...] by id
    ids = [*(pieces.values() if isinstance(pieces, dict) else [len(pieces) - 1]),
           *(t["id"] for t in tokens.get("added_tokens", []))]
    if ids and max(ids) >= vocab_size:
        raise GenerationError(f"{folder}: the tokenizer has ids up to {max(ids)}, but the model's vocabulary has "
                              f"{vocab_size} rows: this tokenizer belongs to another model. Copy the tokenizer of "
                              f"the checkpoint this folder was built from: {KEEP_TOKENIZER.format(folder=folder)}")


def check_token_counts(max_new_tokens, min_new_tokens=0) -> None:
    """Whole numbers with 1 <= max_new_tokens and 0 <= min_new_tokens <= max_new_tokens, or a GenerationError.
    Lab 04. (og aborts the whole process, a dead kernel in Jupyter, when max_length leaves no room for a token.)"""
    for name, value in (("max_new_tokens", max_new_tokens), ("min_new_tokens", min_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenerationError(f"{name}={value!r} must be a whole number (int).")
    if max_new_tokens < 1 or min_new_tokens < 0 or min_new_tokens > max_new_tokens:
        raise GenerationError(f"Need 1 <= max_new_tokens and 0 <= min_new_tokens <= max_new_tokens; got "
                              f"{max_new_tokens} and {min_new_tokens}.")


def check_top_k(search: dict, model_dir: str | Path) -> None:
    """top_k at most the model's vocabulary: og aborts the process on a larger one. Lab 04."""
    vocab = int(model_config(model_dir)["vocab_size"])
    if search.get("top_k", 0) > vocab:
        raise GenerationError(f"top_k={search['top_k']} is larger than the model's vocabulary ({vocab} tokens): "
                              f"use 0 (no limit) or 1 to {vocab}.")
