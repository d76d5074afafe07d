"""Pre-train the course's `tiny` Phi-3 and commit it under data/tiny/ (about 40 minutes on 2 cores).

    python tools/pretrain_tiny.py                  # then commit data/tiny/
    python tools/pretrain_tiny.py --measure-only   # only re-measure the committed folder's record

Run it after changing the corpus (`python tools/make_data.py`) or `labkit.models.SPECS["tiny"]`:
`create_tiny` only uses the committed copy when its recorded cache key matches the current spec and
data, and otherwise pre-trains on the attendee's machine. CPU training is not bit-identical across
processors, so a re-run gives other weights; the record it writes lets you check they do as well:

- the training curve (loss per step) and the held-out perplexity;
- the base model's answers to general prompts: the share that are sentences of the corpus's kind;
- the base model's rates on the paraphrased travel questions (city named, fact stated), which lab 03
  compares with its adapter's.

The folder is replaced atomically; a failed run leaves the committed copy untouched.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GENERAL_PROMPTS = ["Tell me a fact.", "Write a short sentence.", "Tell me a short story.", "Say something true.",
                   "What did the river do?", "Tell me about the old baker.", "Describe your morning.",
                   "What is in the garden?"]


def greedy_answers(folder: Path, prompts: list[str], max_new_tokens: int = 40) -> list[str]:
    """Greedy answers of the PyTorch checkpoint, in the chat format (what the og builds answer too)."""
    import torch
    from transformers import AutoTokenizer, Phi3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = Phi3ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    stop = tokenizer.convert_tokens_to_ids(["<|end|>", "<|endoftext|>"])
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)["input_ids"]
            tokens = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
            out.append(tokenizer.decode(tokens[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def measure(folder: Path) -> dict:
    """What the record says about a pre-trained folder: its answers to general and to travel prompts."""
    from labkit import cache, data, judge

    general = greedy_answers(folder, GENERAL_PROMPTS)
    questions = data.paraphrases()
    base = judge.travel_rates(questions, greedy_answers(folder, [q["prompt"] for q in questions]))
    return {
        "weights_sha256": cache.file_sha256(folder / "model.safetensors"),
        "recipe": "tools/pretrain_tiny.py: next-token loss on data/corpus/train.txt, AdamW, one-cycle schedule",
        "base_general_answers": dict(zip(GENERAL_PROMPTS, general)),
        "base_corpus_sentence_share": sum(map(judge.is_corpus_sentence, general)) / len(general),
        "base_paraphrase_rates": base.as_dict(),
    }


def main() -> None:
    from labkit import models

    target = models.COMMITTED_TINY
    if "--measure-only" in sys.argv:      # re-measure the committed folder after changing the measurement
        record = json.loads((target / "labkit_model.json").read_text(encoding="utf-8"))
        record.update(measure(target))
        (target / "labkit_model.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        print(f"re-measured {target}: {record['base_paraphrase_rates']}")
        return
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        tmp = Path(scratch) / "tiny"
        tmp.mkdir()
        record = models.pretrain_into(tmp, models.SPECS["tiny"], progress=True)
        record.update(measure(tmp))
        (tmp / "labkit_model.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        old = target.with_name("tiny.old")
        shutil.rmtree(old, ignore_errors=True)   # a rename onto an existing folder fails on Windows
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.iterdir()) / 1e6
    print(f"wrote {target} ({size:.1f} MB, {record['seconds']:.0f} s): held-out perplexity "
          f"{record['heldout_perplexity']:.2f}, base corpus-sentence share {record['base_corpus_sentence_share']:.2f}, "
          f"base paraphrase rates {record['base_paraphrase_rates']}")


if __name__ == "__main__":
    main()
