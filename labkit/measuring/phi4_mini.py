"""Phi-4-mini beside Phi-3.5-mini at real size: the `--phi4` part of `make bench-scale`. Lab 01 (and lab 05).

Both INT4 shadow builds measured in one run (`labkit.scale` builds and times them), then what differs where a laptop
feels it: the KV cache each token of context holds (grouped-query attention: a third for Phi-4-mini), and decode
speed after 256, 2K and 4K tokens of prompt, with the one-off cost of LongRoPE's switch at 4,096 tokens.
"""

from __future__ import annotations

from pathlib import Path

from ..core import sizing
from ..making import shadow
from . import bench

CONTEXTS = (256, 2048, 4096)   # tokens of context before decode: a question, a long chat, a document


def timed_from(context: int, switch_at: int | None, new_tokens: int) -> int:
    """Where `context_decode` times a context: just past LongRoPE's switch where its decode would cross it. Lab 01."""
    return switch_at + 2 if switch_at and context <= switch_at < context + new_tokens else context


def context_decode(build_dir: Path, contexts=CONTEXTS, new_tokens: int = 16, switch_at: int | None = None,
                   runs: int = 3) -> dict:
    """Decode tokens/second after `contexts` tokens of prompt: each context prefilled once, then `new_tokens` decoded
    from the same point `runs` times (`Generator.rewind_to`) after one warm-up; the median. Lab 01.

    Each decode step reads the weights and the whole KV cache: the longer the context, the more a model's KV
    cache per token (`sizing.kv_cache_bytes_per_token`) costs. LongRoPE models (Phi-3.5-mini, Phi-4-mini) switch
    from short to long rotary factors once the sequence passes `switch_at` (their original_max_position_embeddings,
    4096), and onnxruntime-genai then recomputes the whole KV cache, once (its pull request 1161): a context whose
    timed decode would cross it starts just past it instead (so a rewind never goes back below it), and the crossing
    is timed apart (`switch_seconds`: `new_tokens` tokens decoded across it, the recomputation included)."""
    import statistics

    from ..core import data
    from ..runtime import loop

    model, tokenizer = bench._load_fresh(build_dir)
    text_ids = list(tokenizer.encode(data.corpus("heldout")))

    def prompt(length: int) -> list[int]:
        return (text_ids * (length // len(text_ids) + 1))[:length]

    speeds = {}
    for context in contexts:
        length = timed_from(context, switch_at, new_tokens)
        ids = prompt(length)
        generator = loop.new_generator(model, max_length=length + new_tokens, do_sample=False)
        generator.append_tokens(ids[:-1])                    # the prefill, once per context
        seconds = []
        for _ in range(runs + 1):
            generator.rewind_to(length - 1)
            seconds.append(loop.run(generator, ids[-1:]).seconds)    # one step for the last prompt token, then
                                                                    # new_tokens - 1 more: new_tokens steps
        speeds[str(context)] = new_tokens / statistics.median(seconds[1:])
        del generator
    result = {"decode_tok_s": speeds, "new_tokens": new_tokens, "runs": runs}
    if switch_at:
        _, _, decode = loop.greedy_tokens(model, prompt(switch_at - new_tokens // 2), new_tokens, exact=True)
        result["switch_seconds"] = decode
    return result


def _how_timed(measured: dict) -> str:
    """How `context_decode` timed a context: a median of decodes from one prefill, or one (a result without `runs`)."""
    runs, new = measured.get("runs"), measured["new_tokens"]
    return (f"the median of {runs} decodes of {new} tokens from one prefill each" if runs
            else f"one decode of {new} tokens each")


def summary(row: dict, layers: int | None) -> dict:
    """bench-scale's Phi-4-mini section from its INT4 shadow build's measured `row` (`scale.measure_depth`). Lab 01."""
    full = shadow.shadow_config("phi-4-mini")
    row = dict(row)       # its fraction of the bandwidth bound: `bound.with_bound`, once the whole run is measured
    return {"shadow_of": shadow.ARCHITECTURES["phi-4-mini"]["hub_id"], "layers": full["num_hidden_layers"],
            "measured_layers": [layers or full["num_hidden_layers"]],
            "parameters": shadow.count_parameters(shadow.shadow_config("phi-4-mini", layers)),
            "full_size_parameters": shadow.count_parameters(full),
            "kv_cache_bytes_per_token": sizing.kv_cache_bytes_per_token(full), "int4": row}


def lines(result: dict) -> list[str]:
    """Phi-4-mini beside Phi-3.5-mini in the printed table (empty without a Phi-4-mini measurement). Lab 01."""
    phi4 = result.get("phi-4-mini")
    if not phi4:
        return []
    row = phi4["int4"]
    depth = "" if phi4["measured_layers"] == [phi4["layers"]] else f", {phi4['measured_layers'][0]} layers measured"
    lines = [f"phi-4-mini shadow ({phi4['full_size_parameters'] / 1e9:.2f}B parameters{depth}), int4: "
             f"{row['size_bytes'] / 1e9:.2f} GB, build {row['build_seconds'] / 60:.1f} min, peak RAM "
             f"{row['peak_rss_bytes'] / 1e9:.1f} GB"
             + (f" ({row['peak_anon_bytes'] / 1e9:.1f} anonymous)" if row.get("peak_anon_bytes") else "")
             + f", load {row['load_seconds']:.1f} s, prefill "
             f"{row['prefill_tok_s']:.1f} tok/s, decode {row['decode_tok_s']:.1f} tok/s "
             f"({row['bandwidth_fraction']:.2f} of bound)",
             f"KV cache per token: phi-3.5-mini {result['kv_cache_bytes_per_token'] / 1024:.0f} KiB, "
             f"phi-4-mini {phi4['kv_cache_bytes_per_token'] / 1024:.0f} KiB"]
    contexts = result.get("context_decode")
    if contexts:
        new = contexts["phi-4-mini"]["new_tokens"]
        lines.append(f"decode tok/s after N tokens of context ({contexts['layers']} layers); seconds for {new} "
                     f"tokens across LongRoPE's switch at {contexts['switch_at']}:")
        for name in ("phi-3.5-mini", "phi-4-mini"):
            speeds = ", ".join(f"{n}: {v:.1f}" for n, v in contexts[name]["decode_tok_s"].items())
            lines.append(f"  {name:12} {speeds}; across the switch {contexts[name]['switch_seconds']:.1f} s")
    return lines


def table(result: dict):
    """Phi-3.5-mini and Phi-4-mini INT4 side by side (a bench-scale result with `--phi4`), or None. Lab 01.

    What the bigger vocabulary costs (folder, build memory, the LM head each token reads) and what grouped-query
    attention saves (KV cache per token, decode at long contexts)."""
    import pandas as pd

    phi4 = result.get("phi-4-mini")
    phi35 = (phi4 or {}).get("phi35_int4_same_run") or result.get("int4", {})
    if not phi4 or "size_bytes" not in phi35:
        return None
    contexts = result.get("context_decode", {})
    rows = {}
    for name, row, kv, parameters in (
            ("phi-3.5-mini", phi35, result["kv_cache_bytes_per_token"], result["parameters"]),
            ("phi-4-mini", phi4["int4"], phi4["kv_cache_bytes_per_token"], phi4["full_size_parameters"])):
        rows[name] = {"parameters_b": parameters / 1e9, "size_gb": row["size_bytes"] / 1e9,
                      "build_peak_ram_gb": row["peak_rss_bytes"] / 1e9,
                      **({"build_peak_anon_gb": row["peak_anon_bytes"] / 1e9} if "peak_anon_bytes" in row else {}),
                      "build_min": row["build_seconds"] / 60,
                      "weights_read_per_token_gb": row["weight_bytes_per_token"] / 1e9,
                      "prefill_tok_s": row["prefill_tok_s"], "decode_tok_s": row["decode_tok_s"],
                      "bandwidth_fraction": row["bandwidth_fraction"], "kv_cache_kib_per_token": kv / 1024}
        for context, speed in contexts.get(name, {}).get("decode_tok_s", {}).items():
            rows[name][f"decode_tok_s_at_{context}"] = speed
        if name in contexts:
            rows[name]["longrope_switch_s"] = contexts[name]["switch_seconds"]
    return pd.DataFrame(rows).round(2)     # one column per model, one row per quantity


def source_line(result: dict) -> str:
    """Where the Phi-4-mini comparison comes from, in one line (it may be another run than the rest). Lab 01."""
    phi4 = result["phi-4-mini"]
    machine = phi4.get("machine", result.get("machine", {}))
    limit = phi4.get("memory_limit_bytes")
    limit = f", inside a {limit / 1e9:.0f} GB memory limit" if limit else ""
    when = phi4.get("measured_on", result.get("measured_on", "?"))
    line = (f"Phi-4-mini beside Phi-3.5-mini, both INT4 and measured in one run ({machine.get('cores', '?')} cores, "
            f"{when}{limit}); decode after N tokens of context at {result['context_decode']['layers']} layers, "
            f"{_how_timed(result['context_decode']['phi-4-mini'])}.")
    if when != result.get("measured_on", when):
        # The committed reference joins this section from another run: its Phi-3.5-mini row is that run's.
        line += (f" That run is not the one of the table above ({result['measured_on']}): compare Phi-3.5-mini's "
                 "numbers within one table, not across the two.")
    return line


def plot(result: dict):
    """KV cache per token and decode speed against context length, Phi-3.5-mini beside Phi-4-mini. Lab 01."""
    import matplotlib.pyplot as plt

    contexts = result["context_decode"]
    fig, (kv_ax, speed_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    names = ["phi-3.5-mini", "phi-4-mini"]
    kv = [result["kv_cache_bytes_per_token"], result["phi-4-mini"]["kv_cache_bytes_per_token"]]
    kv_ax.bar(names, [k / 1024 for k in kv], color=["#1f77b4", "#ff7f0e"])
    kv_ax.set(ylabel="KiB per token of context", title="KV cache (fp32, all layers)")
    for name, colour in zip(names, ["#1f77b4", "#ff7f0e"], strict=True):
        speeds = contexts[name]["decode_tok_s"]
        speed_ax.plot([int(c) for c in speeds], list(speeds.values()), "o-", color=colour, label=name)
    speed_ax.set_xscale("log", base=2)
    speed_ax.minorticks_off()
    contexts_measured = [int(c) for c in contexts["phi-4-mini"]["decode_tok_s"]]
    speed_ax.set_xticks(contexts_measured, [f"{c // 1024}K" if c >= 1024 else str(c) for c in contexts_measured])
    moved = [(c, timed_from(c, contexts.get("switch_at"), contexts["phi-4-mini"]["new_tokens"]))
             for c in contexts_measured]
    moved = [(c, start) for c, start in moved if start != c]
    xlabel = "tokens of context" + "".join(f"\n({c // 1024}K: timed from {start:,}, past LongRoPE's switch)"
                                           for c, start in moved)
    speed_ax.set(xlabel=xlabel, ylabel="decode tokens/s", ylim=(0, None),
                 title=f"Decode after a long prompt ({contexts['layers']} layers, INT4)")
    speed_ax.legend()
    for ax in (kv_ax, speed_ax):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
