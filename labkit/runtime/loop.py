"""The onnxruntime-genai token loop, written once: text and image prompts, streaming, timing. Lab 04.

Every generation in labkit (generate, chat, image prompts, benchmarks, the export checks, the peer
worker) runs through `run`:

    generator = new_generator(model, max_length=len(ids) + 64)
    out = run(generator, ids, stream=tokenizer.create_stream(), on_token=print)

`prompt` is a list of token ids (`append_tokens`) or the named tensors a multimodal processor
returns (`set_inputs`). Time starts before the prompt is fed, so `first_token_seconds` covers the
prefill (and, for images, the vision and embedding models genai runs for the first token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import guidance as guided


@dataclass
class Decoded:
    """What one pass of the loop produced: new token ids, their text (when streamed) and the timings. Lab 04."""

    tokens: list[int]
    text: str
    first_token_seconds: float
    seconds: float
    pieces: list[str] = field(default_factory=list, repr=False)

    @property
    def decode_seconds(self) -> float:
        """Seconds after the first token: decoding only."""
        return self.seconds - self.first_token_seconds


def new_generator(model, max_length: int, min_length: int = 0, guidance=None, **search):
    """`og.Generator` with `set_search_options(max_length=…, min_length=…, **search)`. Lab 04.

    Always give max_length: its default is the model's whole context (128K tokens for Phi-3.5).
    `guidance` (`labkit.guidance.request`) constrains the answer to a JSON schema, regex or grammar; og compiles
    it here, so a bad one fails before the first token."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length, min_length=min_length, **search)
    guided.apply(params, guidance)
    try:
        return og.Generator(model, params)
    except RuntimeError as err:
        if guidance is None:
            raise
        raise guided.compile_error(err, guidance) from None


def run(generator, prompt, stream=None, on_token: Callable[[str], None] | None = None,
        beams: bool = False) -> Decoded:
    """Feed `prompt`, then `generate_next_token` until the generator is done. Lab 04.

    `stream` (`tokenizer.create_stream()` or a processor's) turns tokens into text as they arrive, held
    back while a multi-byte character is incomplete; `on_token` gets each non-empty piece. With
    `beams=True` the beams are only final at the end: the best one (sequence 0) is decoded then.
    """
    started = time.perf_counter()
    if isinstance(prompt, (list, tuple)) or hasattr(prompt, "dtype"):    # token ids (a list or numpy array)
        prompt_length = len(prompt)
        generator.append_tokens(prompt)
    else:                                    # og.NamedTensors from a multimodal processor
        prompt_length = None
        generator.set_inputs(prompt)
    tokens, pieces, first = [], [], None
    while not generator.is_done():
        generator.generate_next_token()
        if first is None:
            first = time.perf_counter() - started
        if beams:
            continue
        token = int(generator.get_next_tokens()[0])
        tokens.append(token)
        if stream is not None:
            piece = stream.decode(token)
            if not "".join(pieces) and piece.startswith(" "):
                # SentencePiece writes a word start as "▁": transformers' decoder drops the answer's first one,
                # og 0.12's stream keeps it as a space (" Kyoto is…").
                piece = piece[1:]
            pieces.append(piece)
            if on_token and piece:
                on_token(piece)
    seconds = time.perf_counter() - started
    if beams:
        sequence = [int(t) for t in generator.get_sequence(0)]
        tokens = sequence[prompt_length:] if prompt_length is not None else sequence
    return Decoded(tokens, "".join(pieces), first if first is not None else seconds, seconds, pieces)


def greedy_tokens(model, prompt_ids, new_tokens: int, exact: bool = False) -> tuple[list[int], float, float]:
    """Greedy decode of `new_tokens` (all of them when `exact`). Returns (new tokens, prefill seconds, decode
    seconds): the first token finishes the prefill. Lab 01."""
    length = len(prompt_ids) + new_tokens
    out = run(new_generator(model, max_length=length, min_length=length if exact else 0, do_sample=False), prompt_ids)
    return out.tokens, out.first_token_seconds, out.decode_seconds
