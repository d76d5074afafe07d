"""Text generation with the onnxruntime-genai generate() API (0.6+). Taught in lab 04; first used in lab 01.

On top of the token loop (`labkit.loop`, the one place labkit calls `generate_next_token`) this
module adds what a chat needs: the folder's model and tokenizer loaded once, the chat template,
LoRA adapters (`labkit.adapters`), multi-turn history and comparison tables. Every input is checked
first (`labkit.inputs`).
Lab 04 writes the loop out in plain og calls before it uses `generate`.
"""

from __future__ import annotations

import atexit
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core import paths, sizing
from . import guidance as guided
from . import loop
from .adapters import activate as activate_adapter
from .adapters import release as release_adapters
from .inputs import (
    REBUILD,
    GenerationError,
    check_control_tokens,
    check_model_path,
    check_search_options,
    check_text,
    check_token_counts,
    check_tokenizer_files,
    check_top_k,
    context_length,
    control_tokens,
    model_config,
)


@dataclass
class Generation:
    """What one generate() call produced and what it cost. Lab 04."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    time_to_first_token: float
    tokens: list[int] = field(default_factory=list, repr=False)
    value: object = None      # with schema=: the answer as Python objects; with regex=: the match

    @property
    def decode_tokens_per_second(self) -> float:
        """New tokens after the first, per second of decoding (prefill excluded)."""
        decode_time = self.seconds - self.time_to_first_token
        return (self.new_tokens - 1) / decode_time if self.new_tokens > 1 and decode_time > 0 else float("nan")


def open_model(model_dir: str | Path, threads: int | None = None):
    """`og.Model` for a folder, every ONNX Runtime session of it on the machine's cores. Lab 04.

    Measured on the course's 2-core machines: left to its default, each CPU session runs on one thread
    (decode of a 160M-parameter INT4 model: 130 vs 205 tok/s; a 1,932-token image prompt's prefill
    through one Phi-3.5 layer: 4.9 vs 2.4 s, its CLIP encoder 1.6 vs 0.9 s). An explicit
    `intra_op_num_threads` for the decoder and, in a vision folder, the vision and embedding sessions
    uses them all. A value already in the folder's genai_config wins.
    """
    import onnxruntime_genai as og

    folder = Path(model_dir)
    check_model_path(folder)
    config = model_config(folder)
    check_tokenizer_files(folder, config["vocab_size"])
    # The whole session_options of each: og's overlay replaces a vision or embedding session's options outright.
    sessions = {name: {"session_options": {**(part.get("session_options") or {}),
                                           "intra_op_num_threads": threads or os.cpu_count() or 1}}
                for name, part in config.items()
                if isinstance(part, dict) and part.get("filename")
                and "intra_op_num_threads" not in (part.get("session_options") or {})}
    if not sessions:
        return og.Model(str(folder))
    og_config = og.Config(str(folder))
    og_config.overlay(json.dumps({"model": sessions}))
    return og.Model(og_config)


KEEP = 4                  # models kept loaded for the next call, memory allowing
HEADROOM = 1.5            # a model's working memory (KV cache, activations) over its folder on disk
_loaded: OrderedDict[str, tuple] = OrderedDict()     # folder -> (og.Model, og.Tokenizer), least recent first
_processors: dict[str, object] = {}


def load(model_dir: str | Path):
    """`(og.Model, og.Tokenizer)` for a genai folder, loaded once and kept for the next call. Lab 04.

    Up to `KEEP` models stay loaded while memory allows: before one loads, the least recently used are freed
    until its folder's bytes fit in the available memory with `HEADROOM`, so two copies of a 4B model are never held
    on a 16 GB laptop."""
    import onnxruntime_genai as og

    key = str(model_dir)
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    folder = Path(model_dir)
    check_model_path(folder)
    _make_room(paths.dir_size(folder) * HEADROOM)
    try:
        model = open_model(folder)
    except RuntimeError as err:     # og's own error: a damaged model file, an execution provider it lacks…
        reason = str(err).strip().splitlines()[0][:300].rstrip(".")
        raise GenerationError(f"onnxruntime-genai cannot load {folder}: {reason}. {REBUILD}.") from None
    _loaded[key] = (model, og.Tokenizer(model))
    return _loaded[key]


def _make_room(need: float) -> None:
    available = sizing.available_ram_bytes()
    while _loaded and (len(_loaded) >= KEEP or need > available):
        oldest = next(iter(_loaded))
        _forget(oldest)
        available += paths.dir_size(oldest)


def _forget(key: str) -> None:
    """Drop labkit's references to one loaded model (its processor and adapters first)."""
    _processors.pop(key, None)
    release_adapters(key)
    control_tokens.cache_clear()
    del _loaded[key]


def load_processor(model_dir: str | Path):
    """The multimodal processor of a vision model folder, on the model `load` shares. Lab 02."""
    model, _ = load(str(model_dir))
    key = str(model_dir)
    if key not in _processors:
        _processors[key] = model.create_multimodal_processor()
    return _processors[key]


def unload() -> None:
    """Free every model (and adapter) labkit loaded in this process, before loading a big one yourself. Lab 02.

    `load` keeps up to four models for the next call, as many as fit beside each new one; a model you load
    with og yourself is not counted, so free labkit's first."""
    _release()


def _release() -> None:
    for key in list(_loaded):
        _forget(key)


# Free cached models before the interpreter exits, or onnxruntime-genai reports them as leaked.
atexit.register(_release)


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
             adapter: str | Path | None = None, system: str | None = None, schema=None, regex: str | None = None,
             grammar: str | None = None, **search) -> Generation:
    """Generate a reply to `prompt`, streaming each piece of text to `on_token`. Lab 04 (lab 01's quick chat).

    `search` takes the search options of `GeneratorParams.set_search_options` (do_sample, temperature,
    top_k, top_p, num_beams, repetition_penalty…). With `chat=True` the chat template wraps the prompt (and
    `system`, a system message). `adapter`: an `.onnx_adapter` file (lab 03) to activate for this generation.
    `schema` (a JSON schema: dict, JSON text or .json file), `regex` or `grammar` (Lark) constrains the answer
    with og's guidance (`labkit.guidance`); the reply's `value` is then the parsed answer.
    Image prompts for a multimodal model (lab 02) go through `labkit.vision.ask`.
    """
    search = check_search_options(**search)
    guidance = guided.request(schema, regex, grammar)
    guided.check_search(guidance, search)
    model, tokenizer, input_ids = _prompt_ids(model_dir, prompt, chat, max_new_tokens, min_new_tokens, system)
    check_top_k(search, model_dir)
    guided.check_fits(guidance, tokenizer, max_new_tokens)
    generator = loop.new_generator(model, max_length=len(input_ids) + max_new_tokens,
                                   min_length=len(input_ids) + min_new_tokens, guidance=guidance, **search)
    if adapter is not None:
        activate_adapter(generator, str(model_dir), model, adapter)
    if search.get("num_beams", 1) > 1:     # beams are only final at the end: no streaming, one piece of text
        out = loop.run(generator, input_ids, beams=True)
        text = tokenizer.decode(out.tokens)
        text = text[1:] if text.startswith(" ") else text    # og keeps SentencePiece's word-start space (see loop)
        if on_token and text:
            on_token(text)
        return Generation(text, len(input_ids), len(out.tokens), out.seconds, out.seconds, out.tokens)
    out = loop.run(generator, input_ids, stream=tokenizer.create_stream(), on_token=on_token)
    value = guided.parse(guidance, out.text, max_new_tokens) if guidance else None
    return Generation(out.text, len(input_ids), len(out.tokens), out.seconds, out.first_token_seconds, out.tokens,
                      value)


def _prompt_ids(model_dir, prompt: str, chat: bool, max_new_tokens: int, min_new_tokens: int,
                system: str | None = None):
    """(model, tokenizer, prompt ids), after checking the lengths against each other and the context."""
    check_text(prompt)
    check_token_counts(max_new_tokens, min_new_tokens)
    if system is not None and not chat:
        raise GenerationError("system= needs chat=True: the system message is part of the chat template.")
    if chat:
        check_control_tokens(prompt, model_dir)
        if system:
            check_control_tokens(system, model_dir, "system message")
    model, tokenizer = load(str(model_dir))
    input_ids = tokenizer.encode(chat_prompt(tokenizer, prompt, system) if chat else prompt)
    if len(input_ids) == 0:
        raise GenerationError("The prompt is empty: with chat=False nothing is added to it, so the model has no token "
                              "to start from. Give it some text, or use chat=True.")
    limit = context_length(model_dir)
    if len(input_ids) + max_new_tokens > limit:
        over = ("the prompt alone exceeds" if len(input_ids) > limit else
                f"with max_new_tokens={max_new_tokens} that exceeds")
        raise GenerationError(f"The prompt is {len(input_ids)} tokens; {over} the model's context length of {limit}. "
                              "Shorten the prompt" + (" or lower max_new_tokens." if len(input_ids) <= limit else "."))
    return model, tokenizer, input_ids


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
                 max_new_tokens: int = 64, schema=None, **search):
        self.model_dir, self.system, self.adapter = model_dir, system, adapter
        self.max_new_tokens, self.search = max_new_tokens, check_search_options(**search)
        self.schema = schema        # a JSON schema every reply follows (og's guidance), or None
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
                         on_token=on_token, adapter=self.adapter, schema=self.schema, **self.search)
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
