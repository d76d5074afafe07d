"""Text generation with the onnxruntime-genai generate() API (0.6+). Taught in lab 04; first used in lab 01.

On top of the token loop (`labkit.loop`, the one place labkit calls `generate_next_token`) this
module adds what a chat needs: the folder's model and tokenizer loaded once, the chat template,
checked search options and lengths, LoRA adapters, multi-turn history and comparison tables.
Lab 04 writes the loop out in plain og calls before it uses `generate`.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..core import cache, paths
from ..core.errors import LabkitError, MissingInput
from . import loop


@dataclass
class Generation:
    """What one generate() call produced and what it cost. Lab 04."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    time_to_first_token: float
    tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def decode_tokens_per_second(self) -> float:
        """New tokens after the first, per second of decoding (prefill excluded)."""
        decode_time = self.seconds - self.time_to_first_token
        return (self.new_tokens - 1) / decode_time if self.new_tokens > 1 and decode_time > 0 else float("nan")


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


# The tokenizer classes onnxruntime-genai 0.12 reads (transformers 5 saves "TokenizersBackend", which it refuses).
GENAI_TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "GPT2Tokenizer", "GPT2TokenizerFast",
                           "PreTrainedTokenizerFast", "CodeGenTokenizer", "Qwen2Tokenizer", "T5Tokenizer")
KEEP_TOKENIZER = "python -m labkit keep-tokenizer SOURCE_CHECKPOINT {folder}"


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
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    kind = config.get("tokenizer_class")
    if kind not in GENAI_TOKENIZER_CLASSES:
        raise GenerationError(f"{folder}: tokenizer_class {kind!r} in tokenizer_config.json is not one "
                              "onnxruntime-genai 0.12 reads (the model builder writes TokenizersBackend). Restore the "
                              f"source's: {KEEP_TOKENIZER.format(folder=folder)}")
    tokens = json.loads(tokenizer_json.read_text())
    pieces = tokens["model"].get("vocab") or {}     # BPE: {piece: id}; Unigram: [[piece, score], ...] by id
    ids = [*(pieces.values() if isinstance(pieces, dict) else [len(pieces) - 1]),
           *(t["id"] for t in tokens.get("added_tokens", []))]
    if ids and max(ids) >= vocab_size:
        raise GenerationError(f"{folder}: the tokenizer has ids up to {max(ids)}, but the model's vocabulary has "
                              f"{vocab_size} rows: this tokenizer belongs to another model. Copy the tokenizer of "
                              f"the checkpoint this folder was built from: {KEEP_TOKENIZER.format(folder=folder)}")


def open_model(model_dir: str | Path, threads: int | None = None):
    """`og.Model` for a folder, with ONNX Runtime's intra-op threads set to the machine's cores. Lab 04.

    Measured on the course's 2-core machines: left to its default, the CPU session decoded at the
    speed of one thread (130 vs 205 tok/s on a 160M-parameter INT4 model). An explicit
    `intra_op_num_threads` in the genai_config (or this overlay) uses them all. A value already in
    the folder's genai_config wins.
    """
    import onnxruntime_genai as og

    folder = Path(model_dir)
    config = model_config(folder)
    check_tokenizer_files(folder, config["vocab_size"])
    if "intra_op_num_threads" in config["decoder"].get("session_options", {}):
        return og.Model(str(folder))
    og_config = og.Config(str(folder))
    og_config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads or os.cpu_count() or 1}}}}))
    return og.Model(og_config)


@lru_cache(maxsize=4)
def load(model_dir: str | Path):
    """`(og.Model, og.Tokenizer)` for a genai folder, loaded once per process. Lab 04."""
    import onnxruntime_genai as og

    folder = Path(model_dir)
    try:
        model = open_model(folder)
    except RuntimeError as err:     # og's own error: a damaged model file, an execution provider it lacks…
        reason = str(err).strip().splitlines()[0][:300].rstrip(".")
        raise GenerationError(f"onnxruntime-genai cannot load {folder}: {reason}. {REBUILD}.") from None
    return model, og.Tokenizer(model)


_adapters: dict[str, tuple] = {}   # model folder -> (og.Adapters, {adapter file: name})


def _activate(generator, model_dir: str, model, adapter: str | Path) -> None:
    """Load `adapter` (an .onnx_adapter file) once per model and make it the active one."""
    import onnxruntime_genai as og

    adapter = Path(adapter)
    adapters, names = _adapters.setdefault(model_dir, (og.Adapters(model), {}))
    if str(adapter) not in names:
        _check_adapter_fits(model_dir, adapter)
        names[str(adapter)] = f"adapter{len(names)}"
        adapters.load(str(adapter), names[str(adapter)])
    generator.set_active_adapter(adapters, names[str(adapter)])


def read_adapter(adapter: str | Path):
    """`onnxruntime.AdapterFormat` of an `.onnx_adapter` file, or a GenerationError naming the file. Lab 04.

    og and ONNX Runtime report a bad file as "lora adapter format verification" without its name."""
    import onnxruntime

    adapter = Path(adapter)
    made_by = "Lab 03 writes adapter_weights.onnx_adapter next to its model.onnx (labkit.olive.export_with_adapter)."
    if adapter.is_dir():
        what = "a PEFT adapter folder (what `olive finetune` writes)" if (adapter / "adapter_config.json").exists() \
            else "a folder"
        raise GenerationError(f"Adapter {adapter} is {what}; onnxruntime-genai loads the .onnx_adapter file an "
                              f"export writes. {made_by}")
    if not adapter.is_file():
        raise MissingInput(f"Adapter {adapter} does not exist. {made_by}")
    try:
        return onnxruntime.AdapterFormat.read_adapter(str(adapter))
    except RuntimeError:
        size = adapter.stat().st_size
        raise GenerationError(f"Adapter {adapter} ({size:,} bytes) is not a readable .onnx_adapter file (empty, "
                              f"truncated or another format). Export it again. {made_by}") from None


def base_fingerprint(model_dir: str | Path) -> int:
    """A 31-bit fingerprint of a folder's decoder weights (its ONNX file and external data). Lab 03.

    Lab 03's export records it in each adapter (the adapter format's `model_version`); an adapter is only
    loaded on the model it was exported with. Files over 16 MB count by sampled blocks (cache.sampled_sha256)."""
    folder = Path(model_dir)
    decoder = folder / model_config(folder)["decoder"]["filename"]
    digest = hashlib.sha256()
    for part in (decoder, decoder.with_name(decoder.name + ".data")):
        if part.is_file():
            big = part.stat().st_size > cache.HASH_LIMIT
            digest.update((cache.sampled_sha256(part) if big else cache.file_sha256(part)).encode())
    return int(digest.hexdigest()[:8], 16) & 0x7FFFFFFF or 1


def _check_adapter_fits(model_dir: str | Path, adapter: str | Path) -> None:
    """Fail, naming the adapter's own model, unless the adapter was exported with the model in `model_dir`. Lab 04.

    Two checks: its LoRA parameters are inputs of the decoder (else ONNX Runtime fails mid-generation with
    `Invalid input name: …lora_B.MatMul.weight_scales`), and its base fingerprint is this model's (else an
    adapter of another model with the same layer names would load and silently change the answers). The
    fingerprint is the one recorded at export, else that of the model in the adapter's own folder; an adapter
    with neither is checked by its parameter names only.
    """
    import onnx

    adapter, folder = Path(adapter), Path(model_dir)
    fmt = read_adapter(adapter)
    wanted = set(fmt.get_parameters())
    decoder = model_config(folder)["decoder"]["filename"]
    graph = onnx.load(str(folder / decoder), load_external_data=False).graph
    missing = sorted(wanted - {i.name for i in graph.input})
    home = adapter.parent if (adapter.parent / "genai_config.json").exists() else None
    belongs = f"It was exported with the model in {home}: load that folder." if home else \
        "Use the model folder it was exported with (Olive auto-opt writes both into one folder, lab 03)."
    if missing:
        raise GenerationError(f"Adapter {adapter} does not belong to the model in {folder}: {len(missing)} of its "
                              f"{len(wanted)} LoRA parameters (e.g. {missing[0]}) are not inputs of "
                              f"{decoder}. {belongs}")
    same_folder = home is not None and home.resolve() == folder.resolve()
    base = fmt.get_model_version() or (base_fingerprint(home) if home and not same_folder else None)
    if base is not None and base != base_fingerprint(folder):
        raise GenerationError(f"Adapter {adapter} was exported with another model than the one in {folder} (same "
                              f"layer names, different weights: base fingerprint {base:#010x}, this model's "
                              f"{base_fingerprint(folder):#010x}); its answers here would be wrong. {belongs}")


@lru_cache(maxsize=4)
def load_processor(model_dir: str | Path):
    """The multimodal processor of a vision model folder, on the model `load` shares. Lab 02."""
    model, _ = load(str(model_dir))
    return model.create_multimodal_processor()


def _release() -> None:
    control_tokens.cache_clear()
    load_processor.cache_clear()
    _adapters.clear()
    load.cache_clear()


# Free cached models before the interpreter exits, or onnxruntime-genai reports them as leaked.
atexit.register(_release)


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


def chat_prompt(tokenizer, user: str, system: str | None = None, history: list[dict] | None = None) -> str:
    """The model's chat template applied by the tokenizer (Phi-3: <|user|>…<|end|><|assistant|>). Lab 04."""
    check_text(user, "message")
    if system is not None:
        check_text(system, "system message")
    messages = ([{"role": "system", "content": system}] if system else []) + list(history or [])
    messages.append({"role": "user", "content": user})
    return tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)


def generate(model_dir: str | Path, prompt: str, *, chat: bool = True, max_new_tokens: int = 64,
             on_token: Callable[[str], None] | None = None, min_new_tokens: int = 0,
             adapter: str | Path | None = None, **search) -> Generation:
    """Generate a reply to `prompt`, streaming each piece of text to `on_token`. Lab 04 (lab 01's quick chat).

    `search` takes the search options of `GeneratorParams.set_search_options` (do_sample, temperature,
    top_k, top_p, num_beams, repetition_penalty…). With `chat=True` the chat template wraps the prompt.
    `adapter`: an `.onnx_adapter` file (lab 03) to activate for this generation.
    Image prompts for a multimodal model (lab 02) go through `labkit.vision.ask`.
    """
    search = check_search_options(**search)
    model, tokenizer, input_ids = _prompt_ids(model_dir, prompt, chat, max_new_tokens, min_new_tokens)
    check_top_k(search, model_dir)
    generator = loop.new_generator(model, max_length=len(input_ids) + max_new_tokens,
                                   min_length=len(input_ids) + min_new_tokens, **search)
    if adapter is not None:
        _activate(generator, str(model_dir), model, adapter)
    if search.get("num_beams", 1) > 1:     # beams are only final at the end: no streaming, one piece of text
        out = loop.run(generator, input_ids, beams=True)
        text = tokenizer.decode(out.tokens)
        text = text[1:] if text.startswith(" ") else text    # og keeps SentencePiece's word-start space (see loop)
        if on_token and text:
            on_token(text)
        return Generation(text, len(input_ids), len(out.tokens), out.seconds, out.seconds, out.tokens)
    out = loop.run(generator, input_ids, stream=tokenizer.create_stream(), on_token=on_token)
    return Generation(out.text, len(input_ids), len(out.tokens), out.seconds, out.first_token_seconds, out.tokens)


def _prompt_ids(model_dir, prompt: str, chat: bool, max_new_tokens: int, min_new_tokens: int):
    """(model, tokenizer, prompt ids), after checking the lengths against each other and the context."""
    check_text(prompt)
    check_token_counts(max_new_tokens, min_new_tokens)
    if chat:
        check_control_tokens(prompt, model_dir)
    model, tokenizer = load(str(model_dir))
    input_ids = tokenizer.encode(chat_prompt(tokenizer, prompt) if chat else prompt)
    if len(input_ids) == 0:
        raise GenerationError("The prompt is empty: with chat=False nothing is added to it, so the model has no token "
                              "to start from. Give it some text, or use chat=True.")
    limit = context_length(model_dir)
    if len(input_ids) + max_new_tokens > limit:
        raise GenerationError(f"The prompt is {len(input_ids)} tokens; with max_new_tokens={max_new_tokens} that "
                              f"exceeds the model's context length of {limit}. Shorten the prompt or lower "
                              "max_new_tokens.")
    return model, tokenizer, input_ids


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


def print_token(piece: str) -> None:
    """An `on_token` that streams to the notebook/terminal as the tokens arrive. Lab 04."""
    print(piece, end="", flush=True)


def side_by_side(model_dir: str | Path, rows: list[dict], adapters: dict[str, str | Path | None],
                 max_new_tokens: int = 48):
    """Answers to the same prompts under each adapter (None = base model), as a table. Lab 04 (used in lab 03).

    `rows` are travel pairs: their `response` is shown as the reference answer.
    """
    import pandas as pd

    table = []
    for row in rows:
        entry = {"prompt": row["prompt"], "reference": row.get("response", "")}
        for name, adapter in adapters.items():
            entry[name] = generate(model_dir, row["prompt"], max_new_tokens=max_new_tokens, adapter=adapter).text
        table.append(entry)
    return pd.DataFrame(table)


class Chat:
    """A multi-turn conversation on one model: each `say()` sees the turns before it. Lab 04.

    When the conversation no longer fits the context, the oldest turns are dropped (and counted in
    `dropped_turns`) — the documented truncation; a single message that does not fit is an error.
    """

    def __init__(self, model_dir: str | Path, system: str | None = None, adapter: str | Path | None = None,
                 max_new_tokens: int = 64, **search):
        self.model_dir, self.system, self.adapter = model_dir, system, adapter
        self.max_new_tokens, self.search = max_new_tokens, check_search_options(**search)
        self.history: list[dict] = []
        self.dropped_turns = 0

    def say(self, message: str, on_token: Callable[[str], None] | None = None) -> Generation:
        """Send one user message; the reply is added to the history."""
        check_text(message, "message")
        check_control_tokens(message, self.model_dir)
        if self.system:
            check_control_tokens(self.system, self.model_dir, "system message")
        _, tokenizer = load(str(self.model_dir))
        limit = context_length(self.model_dir) - self.max_new_tokens
        while self.history and len(tokenizer.encode(
                chat_prompt(tokenizer, message, self.system, self.history))) > limit:
            self.history = self.history[2:]      # drop the oldest user/assistant pair
            self.dropped_turns += 1
        prompt = chat_prompt(tokenizer, message, self.system, self.history)
        reply = generate(self.model_dir, prompt, chat=False, max_new_tokens=self.max_new_tokens,
                         on_token=on_token, adapter=self.adapter, **self.search)
        self.history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply.text}]
        return reply


def compare_search_options(model_dir: str | Path, prompt: str, settings: dict[str, dict],
                           max_new_tokens: int = 40, adapter: str | Path | None = None):
    """The same prompt under several search settings, as a table. Lab 04."""
    import pandas as pd

    rows = []
    for name, options in settings.items():
        out = generate(model_dir, prompt, max_new_tokens=max_new_tokens, adapter=adapter, **options)
        rows.append({"setting": name, "options": options, "tokens": out.new_tokens, "text": out.text})
    return pd.DataFrame(rows).set_index("setting")
