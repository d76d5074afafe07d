"""Checks for the labs' "Your turn" exercises: ✓ on a right answer, a hint (never the solution) otherwise.

Each check measures what its exercise says a right answer is — a size, a token count, a loss — on this
machine, prints one line, and returns a `Result` (true when right), so a notebook keeps running after a
wrong answer. All labs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .translations import message


@dataclass
class Result:
    """The outcome of one exercise check; prints as its ✓ or hint line. All labs."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("✓ " if self.ok else "✗ ") + self.message

    def _ipython_display_(self) -> None:
        """Nothing: the check printed its line already, and a check ends its cell (Jupyter would show it twice)."""


def _report(ok: bool, right: str, hint: str) -> Result:
    result = Result(ok, right if ok else hint)
    print(repr(result))
    return result


def say(template: str, **values) -> str:
    """`template` in the notebook's language (translations/<lang>/checks.po), filled with `values`. All labs."""
    return message(template).format(**values)


def _close(answer, truth: float, rel: float) -> bool:
    try:
        return math.isclose(float(answer), truth, rel_tol=rel)
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------ lab 00
def parameter_count(answer, model_dir: str | Path) -> Result:
    """The parameter count computed from config.json equals the checkpoint's. Lab 00."""
    from safetensors import safe_open

    total = 0
    for shard in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return _report(answer == total, say("{total:,} parameters, counted from the weights.", total=total),
                   say("{answer!r} is not it. Per layer: qkv_proj (hidden x (heads + 2 kv_heads) x head_dim), o_proj "
                       "(hidden x hidden), gate_up_proj (2 x intermediate x hidden), down_proj (hidden x "
                       "intermediate) and two norms (hidden each); then the embedding, the final norm and lm_head "
                       "(vocab x hidden, not shared with the embedding here).", answer=answer))


def uniform_perplexity(answer, vocab_size: int) -> Result:
    """The perplexity of a model that guesses uniformly over the vocabulary. Lab 00."""
    return _report(_close(answer, vocab_size, 1e-6),
                   say("exp(-log(1/{vocab_size})) = {vocab_size}: a uniform guess is as perplexed as the vocabulary "
                       "is large.", vocab_size=vocab_size),
                   say("{answer!r} is not it. Perplexity is exp(mean negative log-likelihood); with every token at "
                       "probability 1/V, what is -log(1/V)?", answer=answer))


# ------------------------------------------------------------------ lab 01
def block16_build(build_dir: str | Path, default_dir: str | Path, predicted_size_mb) -> Result:
    """An INT4 build with 16-weight blocks, larger than the default INT4 build, size predicted within 15 %. Lab 01."""
    import onnx

    from ..core.paths import dir_size

    def block_sizes(folder) -> set[int]:
        graph = onnx.load(str(Path(folder) / "model.onnx"), load_external_data=False).graph
        return {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "block_size"}

    blocks = block_sizes(build_dir)
    size, default = dir_size(build_dir) / 1e6, dir_size(default_dir) / 1e6
    if blocks != {16}:
        return _report(False, "", say("The MatMulNBits nodes of {folder} use block sizes {blocks}: build INT4 with "
                                      "block_size=16.", folder=Path(build_dir).name, blocks=sorted(blocks)))
    return _report(size > default and _close(predicted_size_mb, size, 0.15),
                   say("{size:.2f} MB vs {default:.2f} MB at block {block}: smaller blocks store more scales.",
                       size=size, default=default, block=max(block_sizes(default_dir))),
                   say("The build is right ({size:.2f} MB) but the prediction {predicted!r} MB is off by more than "
                       "15 %. Per weight: 4 bits plus one fp32 scale per block (the default INT4 is symmetric: no "
                       "zero point); what else in the folder is not quantized?", size=size,
                       predicted=predicted_size_mb))


def int8_ratio(answer, table) -> Result:
    """A predicted INT8 size / FP32 size within 10 % of the lab's table. Lab 01."""
    truth = table.loc["int8", "size_mb"] / table.loc["fp32", "size_mb"]
    close = _close(answer, truth, 0.10)
    return _report(close, say("predicted {answer:.2f}; INT8 is {truth:.2f} of FP32 on disk. What is left is the "
                              "graph and its rotary caches, the same in both.", answer=answer, truth=truth)
                   if close else "",
                   say("{answer!r} is not within 10 % of the table's fraction. Count the embedding (vocab_size x "
                       "hidden_size) at 4 bytes per weight in both builds, every other weight at 1 + 4/32 bytes in "
                       "INT8 (one byte, and a 4-byte scale per block of 32) and 4 in FP32.", answer=answer))


# ------------------------------------------------------------------ lab 02
def processor_image_tokens(folder: str | Path, images: list[str | Path]) -> int:
    """How many image tokens og's processor makes of `images` in one prompt. Lab 02."""
    import onnxruntime_genai as og

    from ..runtime.generate import load_processor
    from ..runtime.images import image_prompt

    processor = load_processor(str(folder))
    inputs = processor(image_prompt("", len(images)), images=og.Images.open(*[str(p) for p in images]))
    return int((inputs["input_ids"].as_numpy() < 0).sum())


def image_tokens(answer, folder: str | Path, images: list[str | Path]) -> Result:
    """The predicted image-token count equals what the processor makes. Lab 02."""
    truth = processor_image_tokens(folder, images)
    return _report(answer == truth, say("{truth} image tokens, as the processor counts them.", truth=truth),
                   say("{answer!r} is not it. Scale the image to the largest grid of 336-px crops that keeps its "
                       "aspect ratio within 16 crops, pad the height to whole crops, count the h x w crops, then "
                       "(h*w + 1) * 144 + 1 + (h + 1) * 12 per image.", answer=answer))


# ------------------------------------------------------------------ lab 03
def own_adapter(model_dir: str | Path, adapter: str | Path, rows: list[dict]) -> Result:
    """An adapter trained on your own pairs lowers their loss (and there are at least 20). Lab 03."""
    from ..measuring.bench import eval_loss

    if len(rows) < 20 or not all(r.get("prompt") and r.get("response") for r in rows):
        return _report(False, "", say("{pairs} pairs: write at least 20, each with a prompt and a response.",
                                      pairs=len(rows)))
    before, after = eval_loss(model_dir, rows=rows), eval_loss(model_dir, adapter, rows=rows)
    return _report(after < before, say("loss on your pairs: {before:.3f} without, {after:.3f} with your adapter.",
                                       before=before, after=after),
                   say("loss {before:.3f} without, {after:.3f} with the adapter: it did not learn your pairs. More "
                       "steps, or a higher learning rate.", before=before, after=after))


def adapter_share(answer, onnx_dir: str | Path, adapter: str | Path) -> Result:
    """The adapter file's size as a share of the model folder, within 10 %. Lab 03."""
    from ..core.paths import dir_size

    truth = Path(adapter).stat().st_size / dir_size(onnx_dir)
    return _report(_close(answer, truth, 0.10),
                   say("the adapter is {truth:.1%} of the folder: cheap to ship many.", truth=truth),
                   say("{answer!r} is not it. Divide the .onnx_adapter file's bytes by the whole folder's.",
                       answer=answer))


# ------------------------------------------------------------------ lab 04
def _repeated_ngrams(tokens: list[int], n: int = 4) -> int:
    """How many n-grams of `tokens` repeat an earlier one. Lab 04."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) - len(set(grams))


def loop_stopped(model_dir: str | Path, prompt: str, settings: dict, new_tokens: int = 80) -> Result:
    """With `settings`, a forced 80-token continuation of the prompt repeats no 4-gram. Lab 04."""
    from ..runtime.generate import GenerationError, generate

    try:
        out = generate(model_dir, prompt, chat=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **settings)
    except GenerationError as err:
        return _report(False, "", say("those settings are not valid: {err}", err=err))
    repeats = _repeated_ngrams(out.tokens)
    return _report(repeats == 0, say("no repeated 4-gram in {tokens} tokens: {text!r}…", tokens=new_tokens,
                                     text=out.text[:80]),
                   say("still {repeats} repeated 4-grams. Which search option penalises tokens already generated?",
                       repeats=repeats))


def new_token_budget(answer, model_dir: str | Path, prompt: str) -> Result:
    """The most new tokens a chat prompt leaves room for in the model's context. Lab 04."""
    from ..runtime.generate import chat_prompt, context_length, load

    _, tokenizer = load(str(model_dir))
    truth = context_length(model_dir) - len(tokenizer.encode(chat_prompt(tokenizer, prompt)))
    return _report(answer == truth, say("{truth} new tokens: max_length = prompt + answer = the context length.",
                                        truth=truth),
                   say("{answer!r} is not it. max_length counts the prompt's tokens (after the chat template) and "
                       "the answer's; the context length is in the folder's genai_config.json.", answer=answer))


def budget_schema(schema, model_dir: str | Path, adapter: str | Path | None, system: str | None = None,
                  question: str = "What would a day in Lisbon cost me?") -> Result:
    """A schema for {"city": string ≤ 40, "budget_usd": integer 0-1000}, and a guided answer that fits it. Lab 04."""
    from ..core import data
    from ..runtime.generate import GenerationError, generate
    from ..runtime.guidance import load_schema

    try:
        schema = load_schema(schema)
    except GenerationError as err:
        return _report(False, "", str(err))
    properties, required = schema.get("properties", {}), set(schema.get("required", []))
    city, budget = properties.get("city", {}), properties.get("budget_usd", {})
    problems = [why for bad, why in [
        (schema.get("type") != "object", say('not yet: the answer is an object: "type": "object".')),
        (set(properties) != {"city", "budget_usd"}, say('not yet: give "properties" for exactly city and '
                                                        'budget_usd.')),
        (required != {"city", "budget_usd"}, say('not yet: list both keys in "required".')),
        (schema.get("additionalProperties") is not False,
         say('not yet: "additionalProperties": false allows no other keys.')),
        (city.get("type") != "string" or city.get("maxLength") != 40,
         say("not yet: city is a string with maxLength 40.")),
        (budget.get("type") != "integer" or budget.get("minimum") != 0 or budget.get("maximum") != 1000,
         say("not yet: budget_usd is an integer with minimum 0 and maximum 1000.")),
    ] if bad]
    if problems:
        return _report(False, "", problems[0])
    try:
        answer = generate(model_dir, question, adapter=adapter, system=system, schema=schema).value
    except GenerationError as err:
        return _report(False, "", say("the schema is right, but the answer failed: {err}", err=err))
    truth = data.cities()["Lisbon"]["budget"]
    return _report(True, say("{answer} fits it (the course's data says {truth} US dollars a day for Lisbon).",
                             answer=answer, truth=truth), "")
