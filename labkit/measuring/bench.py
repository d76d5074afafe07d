"""Measure builds: size, load time, prefill/decode speed, perplexity, agreement with FP32. Lab 01.

Speeds are medians of several runs after a warm-up: compare builds measured in one run, read ratios.

`python -m labkit bench` (or `make bench`) runs the suite on the ~160M-parameter `bench` model:
ORT INT4 / INT8 / FP32 vs PyTorch FP32 eager `generate`, and each build's decode speed as a
fraction of the machine's memory-bandwidth bound (decode reads every weight once per token).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

from ..core import cache, data, paths
from ..core.errors import InputError
from ..making import build, models
from ..runtime import generate, loop

_AGREEMENT_PROMPTS = [
    "The old baker",
    "A small bird watched",
    "Plants turn sunlight",
    "The children found an old map",
    "My neighbour opened",
    "<|user|>\nWhat should I eat in Lisbon?<|end|>\n<|assistant|>\n",
    "<|user|>\nHow do I get around Kyoto?<|end|>\n<|assistant|>\n",
    "<|user|>\nIs travel insurance worth it?<|end|>\n<|assistant|>\n",
]


def _og():
    import onnxruntime_genai as og
    return og


def _load_fresh(model_dir: Path) -> tuple:
    """A fresh `(og.Model, og.Tokenizer)`; measuring functions take it as `loaded=` to share one load. Lab 01."""
    model = generate.open_model(model_dir)
    return model, _og().Tokenizer(model)


def load_seconds(model_dir: Path) -> tuple[float, tuple]:
    """Seconds to create `og.Model` + `og.Tokenizer` (a fresh load), and the loaded pair. Lab 01."""
    started = time.perf_counter()
    loaded = _load_fresh(model_dir)
    return time.perf_counter() - started, loaded


def speed(model_dir: Path, prompt_tokens: int = 128, new_tokens: int = 64, runs: int = 3, loaded=None) -> dict:
    """Median prefill and decode tokens/second (greedy, fixed prompt and length, one warm-up run). Lab 01."""
    model, tokenizer = loaded or _load_fresh(model_dir)
    ids = tokenizer.encode(data.corpus("heldout"))[:prompt_tokens]
    prefills, decodes = [], []
    for i in range(runs + 1):
        _, prefill, decode = loop.greedy_tokens(model, ids, new_tokens, exact=True)
        if i:  # run 0 warms up caches and allocators
            prefills.append(len(ids) / prefill)
            decodes.append((new_tokens - 1) / decode)
    return {"prefill_tok_s": statistics.median(prefills), "decode_tok_s": statistics.median(decodes)}


def _log_probs(model, ids, adapters=None, adapter_name: str | None = None) -> np.ndarray:
    """Log-probabilities of the next token at every position of `ids`, from one prefill."""
    og = _og()
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1)
    generator = og.Generator(model, params)
    if adapters is not None:
        generator.set_active_adapter(adapters, adapter_name)
    generator.append_tokens(ids)
    logits = np.asarray(generator.get_output("logits"), dtype=np.float64)[0]
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def _chunks(tokenizer, texts, block: int, max_blocks: int):
    """Token blocks of at most block+1 tokens: each text on its own, long texts split."""
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        for start in range(0, len(ids) - 1, block):
            chunk = ids[start:start + block + 1]
            if len(chunk) >= 2:
                out.append(chunk)
    return out[:max_blocks]


def token_log_probs(model_dir: Path, texts: list[str], block: int = 128, max_blocks: int = 64,
                    adapter: Path | None = None, loaded=None):
    """[(log-probs at each position, the actual next tokens)] for each text block. Lab 01.

    `adapter`: an `.onnx_adapter` file to activate (lab 03's models take LoRA weights as inputs). A build that
    returns the last position's logits only (`prune_lm_head`, the laptop profile's INT4 and INT8) is scored
    through a view of it that returns them all (`build.every_position_logits`); `loaded` is not used then."""
    if build.prunes_lm_head(model_dir):
        with build.every_position_logits(model_dir) as view:
            return token_log_probs(view, texts, block, max_blocks, adapter)
    model, tokenizer = loaded or _load_fresh(model_dir)
    adapters = None
    if adapter is not None:
        adapters = _og().Adapters(model)
        adapters.load(str(adapter), "adapter")
    out = [(_log_probs(model, chunk[:-1], adapters, "adapter"), np.asarray(chunk[1:])) for chunk in
           _chunks(tokenizer, texts, block, max_blocks)]
    del adapters
    return out


def perplexity(model_dir: Path, text: str | list[str] | None = None, block: int = 128, max_blocks: int = 16,
               adapter: Path | None = None, loaded=None) -> float:
    """Perplexity of an ONNX build on held-out text, from the logits of the prefill. Lab 01."""
    texts = [text] if isinstance(text, str) else (text or [data.corpus("heldout")])
    return perplexity_from_log_probs(token_log_probs(model_dir, texts, block, max_blocks, adapter, loaded))


def perplexity_from_log_probs(pairs) -> float:
    """Perplexity from `token_log_probs` output. Lab 01."""
    nll = -sum(lp[np.arange(len(targets)), targets].sum() for lp, targets in pairs)
    return math.exp(nll / sum(len(targets) for _, targets in pairs))


def kl_of(reference_pairs, pairs) -> float:
    """Mean per-token KL(reference || model) from two `token_log_probs` outputs over the same texts. Lab 03.

    Perplexity only looks at the probability of the right token; KL compares whole distributions,
    so it shows quantization damage that perplexity averages away.
    """
    total = sum((np.exp(r) * (r - t)).sum() for (r, _), (t, _) in zip(reference_pairs, pairs))
    return float(total / sum(len(targets) for _, targets in reference_pairs))


def _greedy_outputs(model_dir: Path, prompts=_AGREEMENT_PROMPTS, new_tokens: int = 32, loaded=None) -> list[list[int]]:
    """Greedy tokens for each prompt, for the agreement column. Lab 01."""
    model, tokenizer = loaded or _load_fresh(model_dir)
    return [loop.greedy_tokens(model, tokenizer.encode(p), new_tokens, exact=True)[0] for p in prompts]


def agreement(outputs: list[list[int]], reference: list[list[int]]) -> float:
    """Share of positions where greedy tokens equal the reference's (FP32) tokens. Lab 01."""
    same = total = 0
    for out, ref in zip(outputs, reference):
        n = max(len(out), len(ref))
        same += sum(a == b for a, b in zip(out, ref))
        total += n
    return same / total if total else float("nan")


def measure(model_dir: Path, reference_outputs=None, *, runs: int = 3, new_tokens: int = 64) -> dict:
    """Everything lab 01 tabulates for one build, from a single load of the model. Lab 01.

    A last-position build (`prune_lm_head`) is scored first, through its own view: one model in memory at a time,
    which at Phi-3.5-mini's size is the difference that matters on a 16 GB laptop."""
    pruned = build.prunes_lm_head(model_dir)
    scored = perplexity(model_dir) if pruned else None
    load_s, loaded = load_seconds(model_dir)
    row = {"size_mb": paths.dir_size(model_dir) / 1e6, "load_s": load_s}
    row.update(speed(model_dir, new_tokens=new_tokens, runs=runs, loaded=loaded))
    row["perplexity"] = scored if pruned else perplexity(model_dir, loaded=loaded)
    outputs = _greedy_outputs(model_dir, loaded=loaded)
    row["agreement_fp32"] = agreement(outputs, reference_outputs) if reference_outputs else 1.0
    row["_outputs"] = outputs
    return row


def compare(builds: dict[str, Path], reference: str = "fp32", runs: int = 3, new_tokens: int = 64, progress=True):
    """Measure every build; agreement is against `reference` (measured first). Returns a DataFrame. Lab 01."""
    import pandas as pd
    from tqdm.auto import tqdm

    if reference not in builds:
        raise InputError(f"The reference build {reference!r} is not among {list(builds)}; build it too.")
    names = [reference] + [n for n in builds if n != reference]
    rows, ref_outputs = {}, None
    for name in tqdm(names, desc="measuring builds", disable=not progress):
        row = measure(builds[name], ref_outputs, runs=runs, new_tokens=new_tokens)
        if name == reference:
            ref_outputs = row["_outputs"]
        row.pop("_outputs")
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "build"
    ref_ppl = table.loc[reference, "perplexity"]
    table["perplexity_vs_fp32_%"] = (table["perplexity"] / ref_ppl - 1) * 100
    return table.loc[list(builds)]


def plot_size_vs_speed(table, title: str = "Size vs decode speed (colour: perplexity)"):
    """Size (MB) against decode tok/s, per build, coloured by its perplexity change (scale ≥ ±1 %). Lab 01."""
    import matplotlib.pyplot as plt

    change = next((c for c in table.columns if c.startswith("perplexity_vs_")), None)
    limit = max(1.0, float(table[change].abs().max())) if change else None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    points = ax.scatter(table["size_mb"], table["decode_tok_s"], c=table[change or "perplexity"], s=80,
                        cmap="coolwarm" if change else "viridis", vmin=-limit if change else None, vmax=limit,
                        edgecolors="grey")
    for name, row in table.iterrows():      # builds of about one size: labels stacked as their points, fastest on top
        near = table[(table["size_mb"] - row["size_mb"]).abs() <= 0.02 * row["size_mb"]]
        rank = int((near["decode_tok_s"] > row["decode_tok_s"]).sum())
        ax.annotate(name, (row["size_mb"], row["decode_tok_s"]), textcoords="offset points",
                    xytext=(6, 6 - 12 * rank), fontsize=8)
    fig.colorbar(points, ax=ax, label=f"perplexity change vs {change[14:-2]} (%)" if change else "perplexity")
    ax.set(xlabel="folder size (MB)", ylabel="decode tokens / s", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ the benchmark suite
def memory_bandwidth(megabytes: int = 1024, runs: int = 5, threads: int | None = None) -> dict:
    """The machine's memory bandwidth in GB/s, best of `runs`. Lab 01.

    - `read_gb_s`: multi-threaded read — a float32 matrix-vector product over a matrix larger than
      any cache (BLAS, every core), which reads each weight once as a decode step does; and the
      same buffer reduced by `threads` threads. The higher of the two is the bound decode is held to.
    - `read_1thread_gb_s`: one thread summing; `copy_gb_s`: read + write (numpy copy).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or os.cpu_count() or 1
    cols = 4096
    matrix = np.ones((megabytes * (1 << 20) // 4 // cols, cols), dtype=np.float32)
    vector = np.ones(cols, dtype=np.float32)
    flat = matrix.reshape(-1)
    parts = np.array_split(flat, threads)
    copy_target = np.empty_like(flat)

    def best(work, nbytes: int) -> float:
        fastest = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            work()
            fastest = min(fastest, time.perf_counter() - started)
        return nbytes / fastest / 1e9

    with ThreadPoolExecutor(threads) as pool:
        threaded_max = best(lambda: list(pool.map(np.max, parts)), flat.nbytes)
    gemv = best(lambda: matrix @ vector, flat.nbytes)
    return {"read_gb_s": max(gemv, threaded_max), "read_gemv_gb_s": gemv, "read_threads_gb_s": threaded_max,
            "read_1thread_gb_s": best(flat.sum, flat.nbytes), "copy_gb_s": best(lambda: np.copyto(copy_target, flat),
                                                                               2 * flat.nbytes), "threads": threads}


def weight_bytes_per_token(model_dir: Path) -> int:
    """Bytes of weights a decode step reads. Lab 01.

    Every initializer counts except the token-embedding table (a Gather reads one row) and the
    rotary caches (a few rows)."""
    import onnx

    config = Path(model_dir) / "genai_config.json"
    filename = (json.loads(config.read_text(encoding="utf-8"))["model"]["decoder"]["filename"] if config.exists()
                else "model.onnx")
    model = onnx.load(str(Path(model_dir) / filename), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if "embed_tokens" in init.name or "cos_cache" in init.name or "sin_cache" in init.name:
            continue
        size = next((int(e.value) for e in init.external_data if e.key == "length"), None)
        total += size if size is not None else len(init.raw_data)
    return total


def _torch_decode_speed(model_dir: Path, prompt_tokens: int = 128, new_tokens: int = 32, runs: int = 3) -> float:
    """PyTorch FP32 eager `generate` decode tokens/second on the same checkpoint (median). Lab 01."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.arange(prompt_tokens)[None] % model.config.vocab_size
    speeds = []
    with torch.no_grad():
        for i in range(runs + 1):
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            prefill = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            if i:
                speeds.append((new_tokens - 1) / (time.perf_counter() - t - prefill))
    return statistics.median(speeds)


def run_benchmark(model: str = "bench", precisions=("int4", "int8", "fp32"), runs: int = 3,
                  out: Path | None = None) -> dict:
    """The `make bench` suite. Prints a table and writes JSON; returns the results. Lab 01."""
    from ..making import build as build_mod

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs={runs!r}: the benchmark needs at least one run (a whole number >= 1).")
    model_dir = models.resolve_model(model)
    bandwidth = memory_bandwidth()
    bound_bw = bandwidth["read_gb_s"] * 1e9   # decode reads weights: the multi-threaded read bound
    rows = {}
    for precision in precisions:
        b = build_mod.build(model, precision)
        row = {"size_mb": b.size_bytes / 1e6, **speed(b.path, runs=runs)}
        row["weight_mb_per_token"] = weight_bytes_per_token(b.path) / 1e6
        row["bandwidth_bound_tok_s"] = bound_bw / (row["weight_mb_per_token"] * 1e6)
        row["fraction_of_bound"] = row["decode_tok_s"] / row["bandwidth_bound_tok_s"]
        rows[precision] = row
    torch_tps = _torch_decode_speed(model_dir, runs=runs)
    from ..core import results
    overhead = overhead_vs_bare_loop(build_mod.build(model, precisions[0]).path, runs=runs) if precisions else {}
    latest = paths.latest_run()
    course = results.read(latest / "results.json").get("course", {}) if latest else {}
    result = {"model": model, "parameters": models.model_card(model_dir).get("parameters"),
              "memory_bandwidth_gb_s": bandwidth, "torch_fp32_eager_decode_tok_s": torch_tps, "builds": rows,
              "labkit_generate_overhead": {"build": precisions[0], **overhead} if overhead else {},
              "course_notebook_seconds": course.get("notebook_seconds", {})}
    for row in rows.values():
        row["speedup_vs_torch"] = row["decode_tok_s"] / torch_tps
    if "int4" in rows and "fp32" in rows:
        result["int4_vs_fp32_size"] = rows["int4"]["size_mb"] / rows["fp32"]["size_mb"]
        result["int4_vs_fp32_decode"] = rows["int4"]["decode_tok_s"] / rows["fp32"]["decode_tok_s"]
    out = Path(out) if out else paths.runs_root() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    paths.write_json_atomic(out, result)
    print(format_benchmark(result))
    print(f"\nwritten to {out}")
    return result


def format_benchmark(result: dict) -> str:
    """The benchmark result as the text table `make bench` prints. Lab 01."""
    lines = [f"model {result['model']} ({result['parameters'] or '?'} parameters); memory bandwidth "
             f"read {result['memory_bandwidth_gb_s']['read_gb_s']:.1f} GB/s, copy "
             f"{result['memory_bandwidth_gb_s']['copy_gb_s']:.1f} GB/s",
             f"PyTorch FP32 eager generate: {result['torch_fp32_eager_decode_tok_s']:.1f} decode tok/s", "",
             f"{'build':<6} {'size MB':>8} {'prefill':>9} {'decode':>8} {'x torch':>8} {'bound':>8} {'of bound':>9}"]
    for name, r in result["builds"].items():
        lines.append(f"{name:<6} {r['size_mb']:8.1f} {r['prefill_tok_s']:9.1f} {r['decode_tok_s']:8.1f} "
                     f"{r['speedup_vs_torch']:8.1f} {r['bandwidth_bound_tok_s']:8.1f} {r['fraction_of_bound']:9.2f}")
    if "int4_vs_fp32_size" in result:
        lines.append(f"\nINT4/FP32 size {result['int4_vs_fp32_size']:.2f}; INT4/FP32 decode "
                     f"{result['int4_vs_fp32_decode']:.2f}x")
    overhead = result.get("labkit_generate_overhead")
    if overhead:
        lines.append(f"labkit generate() vs bare og loop ({overhead['build']}): "
                     f"{overhead['labkit_decode_tok_s']:.1f} vs {overhead['bare_decode_tok_s']:.1f} tok/s, "
                     f"overhead {overhead['overhead_%']:.1f}%")
    if result.get("course_notebook_seconds"):
        lines.append("make course (runs/latest), seconds per notebook: " +
                     ", ".join(f"{k} {v}" for k, v in result["course_notebook_seconds"].items()))
    return "\n".join(lines)


def overhead_vs_bare_loop(model_dir: str | Path, prompt: str = "The old baker", new_tokens: int = 64,
                          runs: int = 5) -> dict:
    """Decode tok/s through `generate()` vs a bare og loop on the same model (medians), and the noise. Lab 04.

    The two alternate which runs first, so neither always gets the warmer cache. `noise_%` is the spread of
    the bare loop's own runs ((max - min) / median): an overhead smaller than that is not measurable here.
    """
    import statistics

    model, tokenizer = generate.load(str(model_dir))
    ids = tokenizer.encode(prompt)
    bare, ours, ttft = [], [], []

    def bare_run():
        _, _, decode = loop.greedy_tokens(model, ids, new_tokens, exact=True)
        return (new_tokens - 1) / decode

    def labkit_run():
        out = generate.generate(model_dir, prompt, chat=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                on_token=lambda piece: None)
        return out.decode_tokens_per_second, out.time_to_first_token

    bare_run(), labkit_run()                      # warm-up
    for i in range(runs):
        if i % 2:
            tps, first = labkit_run()
            bare.append(bare_run())
        else:
            bare.append(bare_run())
            tps, first = labkit_run()
        ours.append(tps)
        ttft.append(first)
    bare_tps, ours_tps = statistics.median(bare), statistics.median(ours)
    return {"bare_decode_tok_s": bare_tps, "labkit_decode_tok_s": ours_tps,
            "overhead_%": (bare_tps / ours_tps - 1) * 100, "noise_%": (max(bare) - min(bare)) / bare_tps * 100,
            "time_to_first_token_ms": statistics.median(ttft) * 1000}


def overhead_finding(cost: dict) -> str:
    """One sentence on `overhead_vs_bare_loop`'s result: measurable or within the runs' noise. Lab 04."""
    overhead, noise = cost["overhead_%"], cost["noise_%"]
    if abs(overhead) <= noise:
        return (f"labkit's overhead ({overhead:+.1f} %) is within the spread of the bare loop's own runs "
                f"({noise:.1f} % between the fastest and the slowest): not measurable on this model.")
    return f"labkit decodes {overhead:.1f} % {'slower' if overhead > 0 else 'faster'} than the bare loop " \
           f"(the bare loop's runs spread over {noise:.1f} %)."


_EVAL_BATCH = 16
_EVAL_FORMAT = "labkit-eval-loss-v1"   # bump when eval_loss measures differently


def eval_loss(model: str | Path, adapter: str | Path | None = None, rows: list[dict] | None = None) -> float:
    """Mean next-token loss (nats) on travel Q&A in chat format, in PyTorch, with or without a LoRA. Lab 03.

    Cached like the steps it measures: the same model, adapter (both by content) and texts give the same loss, so
    a re-run of lab 03 reads it back instead of running the eval set through PyTorch again."""
    from transformers import AutoTokenizer

    model_dir = models.resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = data.chat_texts(tokenizer, rows or data.travel("eval"))
    adapter = Path(adapter) if adapter is not None else None

    def measure(tmp: Path, log: Path) -> dict:
        return {"loss": _eval_loss(model_dir, adapter, tokenizer, texts), "texts": len(texts)}

    name = f"{model_dir.name}-eval-loss" + ("-adapter" if adapter else "")
    return cache.cached_step("measured", name, (model_dir, adapter, texts, _EVAL_FORMAT), measure,
                             info_file="eval_loss.json", label="eval loss").info["loss"]


def _eval_loss(model_dir: Path, adapter: Path | None, tokenizer, texts: list[str]) -> float:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()     # a "Loading weights" bar per call would clutter the notebook
    # A bfloat16 checkpoint (lab 03's full-size AWQ output) stays bfloat16: 7.6 GB for Phi-3.5-mini, not 15.
    config = paths.read_json(model_dir / "config.json", "restore the checkpoint")
    dtype = torch.bfloat16 if (config.get("dtype") or config.get("torch_dtype")) == "bfloat16" else torch.float32
    net = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel
        net = PeftModel.from_pretrained(net, str(adapter))
    net.eval()
    tokenizer.padding_side = "right"      # Phi-3.5 pads left; right keeps every text at positions 0, 1, …
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), _EVAL_BATCH):   # right-padded batches: the same sum as one by one
            batch = tokenizer(texts[start:start + _EVAL_BATCH], return_tensors="pt", padding=True)
            logits = net(**batch).logits[:, :-1].float()
            targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
            total += torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="sum").item()
            count += int((targets != -100).sum())
    return total / count
