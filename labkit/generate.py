"""Text generation with the onnxruntime-genai generate() API (0.6+). Taught in lab 04; first used in lab 01.

The loop every example of the current API shares, and the one this module wraps:

    model = og.Model(folder); tokenizer = og.Tokenizer(model); stream = tokenizer.create_stream()
    params = og.GeneratorParams(model); params.set_search_options(max_length=256)
    generator = og.Generator(model, params)
    generator.append_tokens(tokenizer.encode(prompt))        # was params.input_ids before 0.6
    while not generator.is_done():
        generator.generate_next_token()                      # compute_logits() is gone
        print(stream.decode(generator.get_next_tokens()[0]), end="")
"""

from __future__ import annotations

import atexit
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable


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


class GenerationError(ValueError):
    """Bad generate() input; the message says how to fix it. Lab 04."""


@lru_cache(maxsize=4)
def load(model_dir: str | Path):
    """`(og.Model, og.Tokenizer)` for a genai folder, loaded once per process. Lab 04."""
    import onnxruntime_genai as og

    folder = Path(model_dir)
    if not (folder / "genai_config.json").exists():
        raise FileNotFoundError(f"{folder} is not an onnxruntime-genai model folder (no genai_config.json). "
                                "Build one in lab 01 (labkit.build.build) or pass a folder that has one.")
    model = og.Model(str(folder))
    return model, og.Tokenizer(model)


_adapters: dict[str, tuple] = {}   # model folder -> (og.Adapters, {adapter file: name})


def _activate(generator, model_dir: str, model, adapter: str | Path) -> None:
    """Load `adapter` (an .onnx_adapter file) once per model and make it the active one."""
    import onnxruntime_genai as og

    adapter = Path(adapter)
    if not adapter.exists():
        raise FileNotFoundError(f"Adapter {adapter} does not exist. Lab 03 writes adapter_weights.onnx_adapter "
                                "next to its model.onnx.")
    adapters, names = _adapters.setdefault(model_dir, (og.Adapters(model), {}))
    if str(adapter) not in names:
        names[str(adapter)] = f"adapter{len(names)}"
        adapters.load(str(adapter), names[str(adapter)])
    generator.set_active_adapter(adapters, names[str(adapter)])


def _release() -> None:
    _adapters.clear()
    load.cache_clear()


# Free cached models before the interpreter exits, or onnxruntime-genai reports them as leaked.
atexit.register(_release)


def context_length(model_dir: str | Path) -> int:
    """The model's context length, from genai_config.json. Lab 04."""
    config = json.loads((Path(model_dir) / "genai_config.json").read_text())
    return int(config["model"]["context_length"])


def chat_prompt(tokenizer, user: str, system: str | None = None, history: list[dict] | None = None) -> str:
    """The model's chat template applied by the tokenizer (Phi-3: <|user|>…<|end|><|assistant|>). Lab 04."""
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
    """
    import onnxruntime_genai as og

    model, tokenizer = load(str(model_dir))
    text = chat_prompt(tokenizer, prompt) if chat else prompt
    input_ids = tokenizer.encode(text)
    limit = context_length(model_dir)
    if len(input_ids) + max_new_tokens > limit:
        raise GenerationError(f"The prompt is {len(input_ids)} tokens; with max_new_tokens={max_new_tokens} that "
                              f"exceeds the model's context length of {limit}. Shorten the prompt or lower "
                              "max_new_tokens.")
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(input_ids) + max_new_tokens,
                              min_length=len(input_ids) + min_new_tokens, **search)
    generator = og.Generator(model, params)
    if adapter is not None:
        _activate(generator, str(model_dir), model, adapter)
    stream = tokenizer.create_stream()
    pieces, tokens = [], []
    started = time.perf_counter()
    first = None
    generator.append_tokens(input_ids)
    while not generator.is_done():
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        if first is None:
            first = time.perf_counter() - started
        tokens.append(token)
        piece = stream.decode(token)
        pieces.append(piece)
        if on_token and piece:
            on_token(piece)
    seconds = time.perf_counter() - started
    return Generation("".join(pieces), len(input_ids), len(tokens), seconds, first or seconds, tokens)


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
