"""The travel pairs in the model's own chat format, as Olive's `--text_template` writes them for training. Lab 03.

Phi-3.5-mini's template puts a newline after each role tag, Phi-4-mini's none; the fine-tune should see the format
the model answers in, so the template comes from the checkpoint's own chat template.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError


def tokenizer(model_dir: Path):
    """The checkpoint's tokenizer in transformers, without the warnings about Phi's LongRoPE config. Lab 03."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()     # transformers 5 warns about the published LongRoPE config's own fields
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    finally:
        hf_logging.set_verbosity(verbosity)


def text_template(model_dir: Path, loaded=None) -> str:
    """Olive's `--text_template` for a travel pair in the model's own chat format: one user turn and the answer,
    closed by <|end|>. Phi-3.5's puts a newline after each role tag (`olive.PHI3_TEMPLATE`), Phi-4-mini's none.
    `loaded`: the checkpoint's tokenizer where the caller has it already. Lab 03."""
    rendered = (loaded or tokenizer(model_dir)).apply_chat_template(
        [{"role": "user", "content": "{prompt}"}, {"role": "assistant", "content": "{response}"}], tokenize=False)
    end = rendered.find("<|end|>", rendered.find("{response}"))
    if "{prompt}" not in rendered or "{response}" not in rendered or end < 0:
        raise InputError(f"{model_dir}'s chat template does not close an answer with <|end|>, as Phi-3 models do: "
                         "lab 03's Olive flow is set up for Phi-3.5 and Phi-4-mini checkpoints.")
    return rendered[:end + len("<|end|>")]
