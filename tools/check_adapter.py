"""Does an .onnx_adapter load on its model and change what the model says? A plain onnxruntime-genai script.

    python tools/check_adapter.py MODEL_FOLDER [ADAPTER_FILE]

ADAPTER_FILE defaults to MODEL_FOLDER/adapter_weights.onnx_adapter (what lab 03's export writes). It prints the
model's size, then the same greedy continuation of one travel question without and with the adapter, and how far
the adapter moved the first token's logits; exit status 1 when the adapter changed nothing. No labkit: what an
attendee runs on the folder they take home.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime_genai as og

PROMPT = "<|user|>\nWhat should I eat in Rome?<|end|>\n<|assistant|>\n"
NEW_TOKENS = 12


def continuation(model, tokenizer, adapters, adapter_name):
    """The first token's logits and the greedy continuation, with `adapter_name` active (or none)."""
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(tokenizer.encode(PROMPT)) + NEW_TOKENS)
    generator = og.Generator(model, params)
    if adapter_name:
        generator.set_active_adapter(adapters, adapter_name)
    generator.append_tokens(tokenizer.encode(PROMPT))
    first_logits = np.array(generator.get_logits()).ravel()
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return first_logits, tokens


def main(folder: str, adapter_file: str | None = None) -> int:
    folder = Path(folder)
    adapter_file = Path(adapter_file or folder / "adapter_weights.onnx_adapter")
    decoder = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]["decoder"]
    print(f"model: {folder} ({decoder['num_hidden_layers']} layers, {decoder['hidden_size']} wide)")
    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    adapters = og.Adapters(model)
    adapters.load(str(adapter_file), "mine")
    base_logits, base_tokens = continuation(model, tokenizer, adapters, None)
    tuned_logits, tuned_tokens = continuation(model, tokenizer, adapters, "mine")
    moved = float(np.abs(tuned_logits - base_logits).max())
    print(f"without the adapter: {tokenizer.decode(base_tokens)!r}")
    print(f"with {adapter_file.name}: {tokenizer.decode(tuned_tokens)!r}")
    print(f"the adapter moved the first token's logits by up to {moved:.4f}; "
          f"{'the same' if base_tokens == tuned_tokens else 'a different'} greedy continuation")
    return 0 if moved > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
