"""The course report: one table of every model variant the labs built, the plots, and report.html. Lab 05.

Everything here reads the run's `results.json`; nothing is measured again. `make course` ends by
exporting the executed report notebook to a self-contained `report.html` (images embedded).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..core import paths, results
from ..core.errors import InputError, MissingInput

# The measures of lab 01's builds that the variants table shows (keys of results.BuildMeasures). Perplexity gets a
# column per text it was measured on: lab 01's held-out text and lab 03's travel eval set are not comparable.
_MEASURES = ["size_mb", "load_s", "prefill_tok_s", "decode_tok_s", "agreement_fp32"]
_COLUMNS = ["lab", "method", "precision", "ep", *_MEASURES, "ppl_heldout", "ppl_travel", "adapter"]


def load_results(run_dir: str | Path | None = None) -> tuple[Path, dict]:
    """The results of `run_dir`, else of the current run, else of `runs/latest`. Lab 05."""
    candidates = [Path(run_dir)] if run_dir else [paths.run_dir(), *filter(None, [paths.latest_run()])]
    for folder in candidates:
        data = results.read(folder / "results.json")
        if any(key[:2].isdigit() and key[:2] != "05" for key in data):
            return folder, data
    raise MissingInput(f"No lab results in {', '.join(map(str, candidates))}. Run the labs first "
                            "(`make course`), or pass the run folder as `results_dir`.")


def _method(name: str) -> str:
    parts = name.split("-")
    return "-".join(parts[1:]) if len(parts) > 1 else "builder default"


METHOD_COLOURS = {"rtn": "#d62728", "awq": "#2ca02c"}    # the same in lab 03's plot and the report's


def variants_table(data: dict):
    """One row per model variant built in labs 01-03 (a DataFrame; missing measures are NaN). Lab 05.

    Lab 01's perplexity is on held-out text (`ppl_heldout`), lab 03's on the travel eval set (`ppl_travel`);
    lab 02 carries the image Q&A speeds."""
    import pandas as pd

    rows = []
    lab01 = data.get("01_builder_quantization", {})
    for name, row in lab01.get("builds", {}).items():
        rows.append({"lab": "01", "variant": name, "method": _method(name), "precision": name.split("-")[0],
                     "ep": lab01.get("execution_provider", "cpu"), **{k: row.get(k) for k in _MEASURES},
                     "ppl_heldout": row.get("perplexity"), "adapter": "–"})
    lab02 = data.get("02_vision_export", {})
    for precision, row in lab02.get("qa", {}).items():
        base, fp32_encoder, _ = precision.partition(", fp32 encoder")      # lab 02's "int4, fp32 encoder" row
        folder = Path(lab02.get("fp32_encoder_exports" if fp32_encoder else "exports", {}).get(base, ""))
        name = "Phi-3.5-vision" if "/" in lab02.get("model", "/") else lab02["model"]    # a hub id, or tiny-vision
        rows.append({"lab": "02", "variant": f"{name} {precision}", "method": "labkit.vision_export",
                     "precision": precision, "ep": lab02.get("execution_provider", "cpu"),
                     "size_mb": paths.dir_size(folder) / 1e6 if folder.name and folder.exists() else None,
                     "prefill_tok_s": row.get("prefill tok/s"), "decode_tok_s": row.get("decode tok/s"),
                     "adapter": "–"})
    lab03 = data.get("03_olive_awq_lora", {})
    for row in lab03.get("rtn_vs_awq", []):
        model, method = row["model"], row["method"]
        if "fp32 perplexity" in row and f"fp32 ({model})" not in [r["variant"] for r in rows]:
            # the reference both INT4 builds are measured against: which one stays closer to it is AWQ's question
            rows.append({"lab": "03", "variant": f"fp32 ({model})", "method": "reference", "precision": "fp32",
                         "ep": lab03.get("execution_provider", "cpu"), "size_mb": row.get("fp32 size_mb"),
                         "ppl_travel": row["fp32 perplexity"], "kl_x1e3": 0.0, "adapter": "–"})
        rows.append({"lab": "03", "variant": f"{method} ({model})", "method": method.split("-")[0].upper(),
                     "precision": "int4", "ep": lab03.get("execution_provider", "cpu"), "size_mb": row.get("size_mb"),
                     "ppl_travel": row.get("perplexity"), "kl_x1e3": row.get("kl_x1e3"), "adapter": "–"})
    onnx_ppl = lab03.get("onnx_eval_perplexity", {})
    onnx_dir, adapter = Path(lab03.get("onnx_dir", "")), Path(lab03.get("adapter", ""))
    adapter_mb = adapter.stat().st_size / 1e6 if adapter.name and adapter.is_file() else 0.0
    base_mb = (paths.dir_size(onnx_dir) / 1e6 - adapter_mb * (adapter.parent == onnx_dir)
               if onnx_dir.name and onnx_dir.is_dir() else None)     # the model without its adapter file
    for which, ppl in onnx_ppl.items():
        size = None if base_mb is None else base_mb + adapter_mb * (which == "adapter")
        rows.append({"lab": "03", "variant": f"AWQ + LoRA int4 ({which})", "method": "AWQ + Olive auto-opt",
                     "precision": "int4", "ep": lab03.get("execution_provider", "cpu"), "ppl_travel": ppl,
                     "size_mb": size,
                     "adapter": "travel" if which == "adapter" else "none"})
    if not rows:
        raise InputError("results.json has no model variants from labs 01 or 03.")
    table = pd.DataFrame(rows).set_index("variant")
    return table[[c for c in _COLUMNS + ["kl_x1e3"] if c in table.columns]]


def plots(data: dict):
    """The report's figures: size vs speed, perplexity by method, fine-tuning loss, AWQ vs RTN. Lab 05."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (size_ax, ppl_ax), (loss_ax, awq_ax) = axes
    builds = data.get("01_builder_quantization", {}).get("builds", {})
    for name, row in builds.items():
        size_ax.scatter(row["size_mb"], row["decode_tok_s"], s=60)
        size_ax.annotate(name, (row["size_mb"], row["decode_tok_s"]), xytext=(4, 4), textcoords="offset points",
                         fontsize=8)
    size_ax.set(xlabel="size (MB)", ylabel="decode tok/s", title="Lab 01: size vs decode speed")
    if builds:
        names = list(builds)
        ppl_ax.barh(names, [builds[n]["perplexity"] for n in names], color="#1f77b4")
        if "fp32" in builds:      # quantization is judged by how close it stays to FP32, not by the lowest value
            ppl_ax.axvline(builds["fp32"]["perplexity"], color="grey", ls="--", label="fp32")
            ppl_ax.legend(loc="lower right")
        ppl_ax.set(xlabel="held-out perplexity (closest to fp32 is best)",
                   title="Lab 01: perplexity by precision/method")
        low = min(builds[n]["perplexity"] for n in names)
        ppl_ax.set_xlim(low * 0.98, max(builds[n]["perplexity"] for n in names) * 1.01)
    finetune = data.get("03_olive_awq_lora", {}).get("finetune", {})
    if finetune.get("train_losses"):
        steps, losses = zip(*finetune["train_losses"])
        loss_ax.plot(steps, losses, marker="o", label="train loss")
        loss_ax.axhline(finetune["eval_loss_before"], ls="--", color="gray", label="eval before")
        loss_ax.axhline(finetune["eval_loss_after"], ls="--", color="green", label="eval after")
        loss_ax.legend()
    loss_ax.set(xlabel="step", ylabel="loss (nats)", title="Lab 03: LoRA fine-tuning")
    awq = data.get("03_olive_awq_lora", {}).get("rtn_vs_awq", [])
    if awq:
        awq_ax.bar(range(len(awq)), [row["kl_x1e3"] for row in awq],
                   color=[METHOD_COLOURS[row["method"].split("-")[0]] for row in awq])
        awq_ax.set_xticks(range(len(awq)), [f"{row['model']}\n{row['method']}" for row in awq], fontsize=7)
    awq_ax.set(ylabel="KL vs fp32 (x1e-3)", title="Lab 03: AWQ vs RTN (lower is better)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def headline(data: dict, real_size: dict | None = None) -> dict:
    """A few numbers worth a sentence each (ratios, not absolute speeds). Lab 05.

    `real_size` (`scale.read()`): Phi-3.5-mini's INT4/FP32 ratios beside the run's own, so nobody quotes the tiny
    model's as Phi's."""
    out = {}
    lab03, lab04 = data.get("03_olive_awq_lora", {}), data.get("04_inference", {})
    # What the fine-tune taught, on questions worded unlike its training data: the course's payoff leads.
    for name, rates in lab03.get("paraphrase_rates", {}).items():
        out[f"{name}: names the city asked"] = f"{rates['city_named']:.0%}"
        out[f"{name}: states the city's fact"] = f"{rates['fact_stated']:.0%}"
    if lab04.get("followup_rates"):
        out["travel adapter: follow-up keeps the city"] = \
            f"{lab04['followup_rates']['followup_keeps_city']:.0%}"
        out["travel adapter: follow-up states the fact asked"] = \
            f"{lab04['followup_rates']['followup_states_fact']:.0%}"
    builds = data.get("01_builder_quantization", {}).get("builds", {})
    if "fp32" in builds and "int4" in builds:
        out["int4 size / fp32"] = builds["int4"]["size_mb"] / builds["fp32"]["size_mb"]
        out["int4 decode / fp32"] = builds["int4"]["decode_tok_s"] / builds["fp32"]["decode_tok_s"]
        out["int4 perplexity vs fp32 (%)"] = builds["int4"]["perplexity_vs_fp32_%"]
    elif "int8" in builds and "int4" in builds:     # the laptop profile builds no FP32
        out["int4 size / int8"] = builds["int4"]["size_mb"] / builds["int8"]["size_mb"]
        out["int4 decode / int8"] = builds["int4"]["decode_tok_s"] / builds["int8"]["decode_tok_s"]
    full = {p: (real_size or {}).get(p, {}) for p in ("int4", "fp32")}
    if all("decode_tok_s" in row for row in full.values()):
        int4, fp32 = full["int4"], full["fp32"]
        out["Phi-3.5-mini at real size: int4 size / fp32"] = int4["size_bytes"] / fp32["size_bytes"]
        out["Phi-3.5-mini at real size: int4 decode / fp32"] = int4["decode_tok_s"] / fp32["decode_tok_s"]
    if lab03.get("finetune"):
        out["travel eval loss before -> after fine-tuning"] = (f"{lab03['finetune']['eval_loss_before']:.2f} -> "
                                                               f"{lab03['finetune']['eval_loss_after']:.2f}")
    for variant, label in (("lab model", "lab model"), ("outliers", "outlier model")):
        kl = {row["method"]: row["kl_x1e3"] for row in lab03.get("rtn_vs_awq", []) if row["model"].startswith(variant)}
        if {"rtn-int4", "awq-int4"} <= set(kl):
            out[f"AWQ KL / RTN KL ({label})"] = kl["awq-int4"] / kl["rtn-int4"]
    timings = data.get("course", {}).get("notebook_seconds", {})
    if timings:
        out["course wall time (s)"] = timings.get("total")
    peaks = data.get("course", {}).get("peak_rss_bytes", {})
    if peaks:
        out["largest peak memory of a lab (GB)"] = max(peaks.values()) / 1e9
    return {k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()}


def course_table(data: dict):
    """Per notebook of the run: its profile, wall minutes and peak memory (the kernel and what it started). Lab 05.

    Empty when the notebooks ran one by one (`make course` records the times and memory)."""
    import pandas as pd

    course = data.get("course", {})
    seconds, peaks = course.get("notebook_seconds", {}), course.get("peak_rss_bytes", {})
    rows = [{"lab": name, "profile": data.get(name, {}).get("profile", course.get("profile")),
             "minutes": round(seconds[name] / 60, 1),
             "peak_memory_gb": round(peaks[name] / 1e9, 1) if name in peaks else math.nan}
            for name in seconds if name != "total"]
    return pd.DataFrame(rows).set_index("lab") if rows else pd.DataFrame()


def _ram_total() -> int:
    """This machine's RAM in bytes (0 without psutil)."""
    try:
        import psutil
    except ImportError:
        return 0
    return psutil.virtual_memory().total


def course_lines(data: dict) -> list[str]:
    """What the run was: profile, shadows or real weights, total time, the memory limit it ran under. Lab 05."""
    course = data.get("course", {})
    if not course:
        return ["no course record: the notebooks ran one by one (`make course` records times and memory)"]
    seconds = course.get("notebook_seconds", {})
    limit = course.get("memory_limit_bytes", 0)
    peaks = course.get("peak_rss_bytes", {})
    lines = [f"profile {course.get('profile')}, "
             + ("Phi-3.5 shadows (random weights: sizes, memory and speed are real, answers are noise)"
                if course.get("shadows") else "real weights" if course.get("profile") != "cpu" else "tiny models")
             + f"; {seconds.get('total', 0) / 60:.1f} min up to the report"]
    if peaks:
        top = max(peaks, key=peaks.get)
        ram = _ram_total()
        bound = "the machine's RAM" if limit and ram and abs(limit - ram) < 2**20 else "a memory limit"
        lines.append(f"largest peak: {peaks[top] / 1e9:.1f} GB in {top}"
                     + (f", of {limit / 1e9:.1f} GB ({bound})" if limit else ""))
    if course.get("cold_cache") or "cache_bytes_at_start" in course:
        held = 0 if course.get("cold_cache") else course["cache_bytes_at_start"]
        lines.append("started on an empty model cache: a first run's minutes" if held < 2**20 else
                     f"started with {held / 1e9:.1f} GB in the model cache: what earlier runs built and fine-tuned "
                     "was reused, so a first run takes longer (lab 00's plan)")
    return lines


def plot_course(data: dict, laptop_ram_gb: float = 16.0):
    """Minutes and peak memory per lab of the run, with the memory limit it ran under. Lab 05."""
    import matplotlib.pyplot as plt

    table = course_table(data)
    fig, (time_ax, ram_ax) = plt.subplots(1, 2, figsize=(10, 3))
    labels = [name[:2] for name in table.index]
    time_ax.bar(labels, table["minutes"], color="tab:blue")
    time_ax.set(xlabel="lab", ylabel="minutes", title="wall time per lab")
    ram_ax.bar(labels, table["peak_memory_gb"], color="tab:orange")
    limit = data.get("course", {}).get("memory_limit_bytes", 0) / 1e9
    if limit and limit < 2 * laptop_ram_gb:
        ram_ax.axhline(limit, ls="--", color="gray", label=f"limit {limit:.0f} GB")
        ram_ax.legend()
    ram_ax.set(xlabel="lab", ylabel="GB", title="peak memory per lab (whole process tree)")
    for ax in (time_ax, ram_ax):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def export_html(executed_notebook: Path, out: Path) -> Path:
    """Executed notebook -> a self-contained HTML page (code hidden, images embedded). Lab 05."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed_notebook, as_version=4))
    tmp = Path(out).with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    return Path(out)


def readable(table, digits: int = 3):
    """The table rounded, with a dash where a variant has no measurement. Lab 05."""
    return table.round(digits).astype(object).where(table.notna(), "–")
