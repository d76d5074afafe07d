"""What each lab needs in a profile, before anything is downloaded or built; lab 03's choice of model.

Lab 00 shows `lab_plan(profile)`: per lab, the RAM, disk and minutes it needs and whether this
machine has them now, from the measurements in `labkit.sizing` (full-size shadows of Phi-3.5) and
the profile's downloads (`labkit.hub`). Lab 03 asks `training_model` whether to train the real
model or, on a laptop CPU where that takes hours, the tiny one; lab 04 asks `chat_model` which model it chats with.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import paths, results, sizing
from ..core.errors import LabkitError
from ..core.profiles import get_profile
from ..core.sizing import GB, PROCESS_OVERHEAD_BYTES
from ..making import hub, models, shadow
from ..training.bf16_linear import BF16_FLAGS

# What each lab of a profile needs, for lab 00's plan. cpu: the cpu course on an empty cache (`make cpu-sheet`).
# laptop: lab 01 from labkit.sizing's shadow measurements; inference from loading and running the INT4 shadow
# build; lab 02 from the vision shadow's export; lab 03 runs the tiny model on a laptop CPU, as in the cpu course
# (AWQ and LoRA of 3.8B parameters take hours there: labkit.sizing.training_estimate); then `make laptop-sheet`.
VISION_PROMPT_RSS_BYTES = 8_718_000 * 1024   # one 1344x1008 image prompt on the full-size vision export
_INT4_INFERENCE_RSS_BYTES = int(3.4 * GB)    # a plain og script: load + 64-token greedy run, INT4 shadow build
OPTIONAL = "optional: "    # a plan row for a choice the default run does not make: never a reason to refuse
# lab 03's full-size outputs: the AWQ checkpoint in bfloat16 (7.6 GB), the INT4 export with its adapter (2.5 GB), and
# while it trains Olive's own copy of the base model (7.6 GB)
_FULL_SIZE_TRAINING_DISK_BYTES = int(18 * GB)


# The cpu course on an empty cache (`make cpu-sheet` rewrites it): per lab, the minutes, peak memory and disk of a first
# run, which lab 00's plan shows for the cpu profile (and for lab 03 on a laptop: the same tiny-model training).
CPU_SHEET = paths.REPO / "docs" / "measured" / "cpu-course.json"
_CPU_NOT_MEASURED = {"minutes": None, "peak_rss_bytes": PROCESS_OVERHEAD_BYTES,
                     "basis": "not measured yet: make cpu-sheet"}
# The laptop course on full-size Phi-3.5 shadows under a 16 GB memory limit (`make laptop-sheet` rewrites it):
# per lab, the minutes and peak memory lab 00's plan shows for the laptop profile.
LAPTOP_SHEET = paths.REPO / "docs" / "measured" / "laptop-course.json"
# Lab 03 with full_size_training=True (and lab 04 on its model) under the same limit (`make laptop-training`).
LAPTOP_TRAINING_SHEET = paths.REPO / "docs" / "measured" / "laptop-training.json"
# Lab 03's default recipe and its full-size one on the tiny course model, judged (`make bench-recipes`).
RECIPES_SHEET = paths.REPO / "docs" / "measured" / "recipes.json"


def run_sheet(run_dir: Path) -> dict:
    """Per lab of a `make course` run: minutes and peak memory, with the machine and the limit it ran under. Lab 00.

    What `labkit course --sheet FILE` writes; lab 00's plan reads the laptop profile's from `LAPTOP_SHEET`."""
    import time

    recorded = results.read(Path(run_dir) / "results.json")
    course = recorded.get("course")
    if not course or not course.get("peak_rss_bytes"):
        raise DoesNotFit(f"{run_dir} has no per-lab times and memory: run the course with `labkit course` first.")
    labs = {name[:2]: {"notebook": name, "minutes": round(seconds / 60, 1),
                       "peak_rss_bytes": course["peak_rss_bytes"].get(name, 0)}
            for name, seconds in course["notebook_seconds"].items() if name != "total"}
    here = sizing.machine()
    for name, grown in course.get("cache_bytes", {}).items():
        labs[name[:2]]["cache_bytes"] = grown
    sheet = {"profile": course["profile"], "shadows": course.get("shadows", False),
             "bf16_instructions": sorted(BF16_FLAGS & sizing.cpu_flags()),
             "cold_cache": course.get("cold_cache", False),
             "measured_on": time.strftime("%Y-%m-%d"), "cores": here["cores"],
             "memory_limit_bytes": course.get("memory_limit_bytes", 0),
             "total_minutes": round(course["notebook_seconds"]["total"] / 60, 1), "labs": labs}
    lab03 = recorded.get("03_olive_awq_lora", {})
    if lab03.get("full_size_recipe") and lab03.get("steps"):      # lab 03 trained the profile's model itself
        sheet["training"] = {"model": lab03["model"], "recipe": lab03["full_size_recipe"], "steps": lab03["steps"]}
    return sheet


def sheet_markdown(sheet: dict) -> str:
    """A run sheet as the Markdown table docs/real-size.md shows (a test keeps the two equal). Lab 00."""
    disk = all("cache_bytes" in row for row in sheet["labs"].values())   # a first run: what each lab wrote
    lines = ["| lab | minutes | peak memory (process tree) |" + (" disk written |" if disk else ""),
             "|---|---|---|" + ("---|" if disk else "")]
    for _, row in sorted(sheet["labs"].items()):
        lines.append(f"| {row['notebook']} | {row['minutes']:.1f} | {row['peak_rss_bytes'] / GB:.1f} GB |"
                     + (f" {row['cache_bytes'] / GB:.2f} GB |" if disk else ""))
    lines.append(f"| whole course | {sheet['total_minutes']:.1f} | "
                 f"{max(row['peak_rss_bytes'] for row in sheet['labs'].values()) / GB:.1f} GB "
                 f"(limit {sheet['memory_limit_bytes'] / GB:.1f} GB) |"
                 + (f" {sum(row['cache_bytes'] for row in sheet['labs'].values()) / GB:.2f} GB |" if disk else ""))
    return "\n".join(lines)


def training_sheet_markdown(sheet: dict) -> str:
    """Lab 03's three steps at full size, as the Markdown table docs/real-size.md shows. Lab 00."""
    lines = ["| step | minutes | peak memory (process tree) |", "|---|---|---|"]
    steps = sheet["training"]["steps"]
    for row in steps:
        lines.append(f"| {row['step']} | {row['minutes']:.1f} | {row['peak memory GB']:.1f} GB |")
    peak, limit = max(row["peak memory GB"] for row in steps), sheet["memory_limit_bytes"] / GB
    lines.append(f"| all three | {sum(row['minutes'] for row in steps):.1f} | {peak:.1f} GB (limit {limit:.1f} GB) |")
    return "\n".join(lines)


def full_size_training_lines(recipe: dict) -> str:
    """What lab 03's flow on Phi-3.5-mini costs on a laptop CPU, per step, from the last `make laptop-training`. Lab 03.

    Says when `recipe` differs from the measured one (the numbers then only indicate)."""
    if not LAPTOP_TRAINING_SHEET.exists():
        return "full-size training on this CPU: not measured yet (make laptop-training measures it)"
    sheet = paths.read_json(LAPTOP_TRAINING_SHEET, "restore it with git or rerun `make laptop-training`")
    training = sheet["training"]
    steps = ", ".join(f"{row['step']} {row['minutes']:.0f} min ({row['peak memory GB']:.1f} GB)"
                      for row in training["steps"])
    total = sum(row["minutes"] for row in training["steps"])
    same = "" if training["recipe"] == recipe else " (measured with another recipe: " + \
        ", ".join(f"{k}={v}" for k, v in training["recipe"].items() if recipe.get(k) != v) + ")"
    _, this_cpu = this_cpu_training(recipe, sheet)
    return (f"full-size training, measured on {'a full-size shadow' if sheet['shadows'] else 'Phi-3.5-mini'} "
            f"({sheet['cores']} cores, {sheet['memory_limit_bytes'] / GB:.0f} GB limit, {sheet['measured_on']}): "
            f"{steps}; {total:.0f} min in all{same}" + (f"\n{this_cpu}" if this_cpu else ""))


def this_cpu_training(recipe: dict, sheet: dict) -> tuple[float | None, str]:
    """AWQ + LoRA minutes of `recipe` on this machine, from `make bench-training`, and a line saying so; without that
    bench, `(None, a warning)` where the sheet's CPU had bfloat16 instructions and this one has none. Lab 00, lab 03."""
    from ..training import bf16_linear, full_size_cost

    if full_size_cost.default_out().exists():
        measured = paths.read_json(full_size_cost.default_out(), "rerun `make bench-training`")
        guess = full_size_cost.estimate(measured, recipe)
        return guess["awq_minutes"] + guess["lora_minutes"], (
            f"on this CPU (make bench-training, {measured['measured_on']}, extrapolated from 1- and 2-layer shadows): "
            f"AWQ ≈ {guess['awq_minutes']:.0f} min, LoRA ≈ {guess['lora_minutes']:.0f} min "
            f"({guess['step_seconds']:.1f} s a step), plus the export")
    if sheet.get("bf16_instructions") and bf16_linear.needed():
        return None, ("that sheet's CPU has bfloat16 instructions and this one has none: AWQ and LoRA compute in "
                      "float32 here, several times slower. `make bench-training` (about 8 min) measures this CPU.")
    return None, ""


def full_size_quality_line() -> str:
    """What `full_size_recipe` costs in answers: the course model trained with it and with lab 03's default, from
    the last `make bench-recipes` (on a shadow the answers are noise, so only a model that learned can show it). Lab 03.
    """
    if not RECIPES_SHEET.exists():
        return "its cost in answer quality: not measured yet (make bench-recipes measures it on the course model)"
    sheet = paths.read_json(RECIPES_SHEET, "restore it with git or rerun `make bench-recipes`")
    rows = list(sheet["rows"].values())
    default, full = rows[0]["travel adapter"], rows[-1]["travel adapter"]
    return (f"the same recipe on the tiny course model, {sheet['questions']} paraphrased travel questions "
            f"(make bench-recipes, {sheet['measured_on']}): its adapter names the city asked in "
            f"{full['city_named']:.0%} and states the fact in {full['fact_stated']:.0%}; lab 03's default recipe: "
            f"{default['city_named']:.0%} and {default['fact_stated']:.0%}")


def _measured_cpu() -> dict:
    if not CPU_SHEET.exists():
        return {}
    sheet = paths.read_json(CPU_SHEET, "restore it with git or rerun `make cpu-sheet`")
    basis = f"measured: make cpu-sheet (a first run, empty cache), {sheet['cores']} cores, {sheet['measured_on']}"
    return {lab: {**row, "basis": basis} for lab, row in sheet["labs"].items()}


def _measured_laptop() -> dict:
    if not LAPTOP_SHEET.exists():
        return {}
    sheet = paths.read_json(LAPTOP_SHEET, "restore it with git or rerun `make laptop-sheet`")
    basis = (f"measured: laptop course on {'full-size shadows' if sheet['shadows'] else 'Phi-3.5'}, "
             f"{sheet['cores']} cores, {sheet['memory_limit_bytes'] / GB:.0f} GB limit, {sheet['measured_on']}")
    labs = {lab: {**row, "basis": basis} for lab, row in sheet["labs"].items()}
    if not sheet.get("cold_cache"):    # lab 03 found the cpu course's tiny-model outputs: its cpu-sheet row stands
        labs.pop("03", None)
    return labs


def lab_plan(profile: str | None = None) -> list[dict]:
    """Per lab: what it does in `profile`, the RAM, disk and minutes it needs, and whether this machine has them.

    Computed before anything is downloaded or built (from the architecture's config and the
    measurements above). Lab 00."""
    prof = get_profile(profile)
    here = sizing.machine()
    rows = []

    def row(lab, what, minutes, ram_bytes, disk_bytes, basis):
        fits = ram_bytes <= here["available_ram_bytes"] and disk_bytes <= here["free_disk_bytes"]
        rows.append({"lab": lab, "what": what, "minutes": None if minutes is None else round(minutes, 1),
                     "peak_ram_gb": round(ram_bytes / GB, 1), "disk_gb": round(disk_bytes / GB, 1),
                     "fits_here": "yes" if fits else "no", "basis": basis})

    cpu = _measured_cpu()
    if prof.name == "cpu":
        for lab in ("00", "01", "02", "03", "04", "05"):
            measured = cpu.get(lab, _CPU_NOT_MEASURED)
            row(lab, "tiny models, CPU", measured["minutes"], measured["peak_rss_bytes"],
                measured.get("cache_bytes", 0), measured["basis"])
        return rows
    downloads = sum(item.approx_gb for item in hub.PROFILE_DOWNLOADS[prof.name]) * GB
    row("00", f"download {len(hub.PROFILE_DOWNLOADS[prof.name])} repositories (make prefetch)", None,
        PROCESS_OVERHEAD_BYTES, downloads, "sizes listed on the hub")
    mini = shadow.shadow_config("phi-3.5-mini")
    if prof.name == "laptop":
        for precision in prof.precisions:
            need = sizing.build_requirement(precision, mini)
            row("01", f"build Phi-3.5-mini {precision.upper()}", need["minutes"] + 5, need["peak_rss_bytes"],
                need["size_bytes"], need["basis"] + "; +5 min measuring")
        export = sizing.vision_export_requirement(shadow.shadow_config("phi-3.5-vision"))
        row("02", "export Phi-3.5-vision (int8 image encoder, INT4 decoder), ask about images", export["minutes"] + 5,
            max(export["peak_rss_bytes"], VISION_PROMPT_RSS_BYTES), export["size_bytes"],
            export["basis"] + "; an image prompt: 8.9 GB, over a minute to the first token")
        tiny = cpu.get("03", _CPU_NOT_MEASURED)
        row("03", "AWQ + LoRA on the tiny model (Phi-3.5-mini itself: full_size_training, the optional row)",
            tiny["minutes"], tiny["peak_rss_bytes"], tiny.get("cache_bytes", 0),
            tiny["basis"].replace("measured: ", "the cpu course's lab 03, measured: "))
        row("04", "chat with the INT4 build", 5, _INT4_INFERENCE_RSS_BYTES, 0,
            "measured: INT4 shadow build loaded and generating")
    else:   # gpu: estimates (no GPU machine has run the course yet)
        row("01", "build Phi-3.5-mini FP16 / INT4 / FP32 on CUDA", 20, 20 * GB, 25 * GB, "estimate")
        row("02", "export Phi-3.5-vision", 10, 24 * GB, 10 * GB, "estimate")
        row("03", "AWQ + LoRA + Olive on CUDA", 20, 24 * GB, 20 * GB, "estimate")
        row("04", "inference on CUDA", 2, 8 * GB, 0, "estimate")
    row("05", "the report", 0.1, PROCESS_OVERHEAD_BYTES, 0, "measured")
    if prof.name != "laptop":
        return rows
    return _with_measured(rows, _measured_laptop(), here) + _full_size_training_rows(here) + _phi4_rows(here)


def _phi4_rows(here: dict) -> list[dict]:
    """Lab 01 (and 04) with model="microsoft/Phi-4-mini-instruct": its downloads and INT4 build. A choice."""
    phi4 = models.HUB_IDS["phi4-mini"]
    need = sizing.build_requirement("int4", shadow.shadow_config("phi-4-mini"))
    downloads = sum(item.approx_gb for item in hub.MODEL_DOWNLOADS[phi4]["laptop"]) * GB
    disk = downloads + need["size_bytes"]
    fits = need["peak_rss_bytes"] <= here["available_ram_bytes"] and disk <= here["free_disk_bytes"]
    return [{"lab": "01", "what": OPTIONAL + f'model="{phi4}": its INT4 build (lab 04 then chats with it)',
             "minutes": round(need["minutes"] + 5, 1), "peak_ram_gb": round(need["peak_rss_bytes"] / GB, 1),
             "disk_gb": round(disk / GB, 1), "fits_here": "yes" if fits else "no",
             "basis": need["basis"] + f"; +5 min measuring; downloads {downloads / GB:.1f} GB "
                      f"(make prefetch PROFILE=laptop MODEL={phi4})"}]


def _full_size_training_rows(here: dict) -> list[dict]:
    """Lab 03 with full_size_training=True, as `make laptop-training` measured it: a choice, not part of the plan's
    default run (refuse_unless_fits does not count it)."""
    if not LAPTOP_TRAINING_SHEET.exists():
        return []
    sheet = paths.read_json(LAPTOP_TRAINING_SHEET, "restore it with git or rerun `make laptop-training`")
    lab03, steps = sheet["labs"].get("03"), sheet["training"]["steps"]
    if not lab03:
        return []
    ram = max(lab03["peak_rss_bytes"], max(row["peak memory GB"] for row in steps) * GB)
    # A step the sheet's run found in the cache cost its recorded minutes when it was made: a first run pays them.
    minutes = lab03["minutes"] + sum(row["minutes"] for row in steps if row["this run"] != "made")
    disk = _FULL_SIZE_TRAINING_DISK_BYTES
    basis = (f"measured: make laptop-training on {'full-size shadows' if sheet['shadows'] else 'Phi-3.5'}, "
             f"{sheet['cores']} cores, {sheet['memory_limit_bytes'] / GB:.0f} GB limit, {sheet['measured_on']}; "
             + ", ".join(f"{row['step']} {row['minutes']:.0f} min" for row in steps))
    this_cpu, line = this_cpu_training(sheet["training"]["recipe"], sheet)
    if this_cpu is not None:     # this machine's AWQ and LoRA instead of the sheet's
        minutes += this_cpu - sum(row["minutes"] for row in steps if row["step"] != "ONNX export with adapter")
    basis += f"; {line}" if line else ""
    fits = ram <= here["available_ram_bytes"] and disk <= here["free_disk_bytes"]
    return [{"lab": "03", "what": OPTIONAL + "full_size_training=True, AWQ + LoRA + export of Phi-3.5-mini itself",
             "minutes": round(minutes, 1), "peak_ram_gb": round(ram / GB, 1), "disk_gb": round(disk / GB, 1),
             "fits_here": "yes" if fits else "no", "basis": basis}]


def _with_measured(rows: list[dict], measured: dict, here: dict) -> list[dict]:
    """One row per lab where a whole-course run measured it: its minutes and peak memory, the steps' disk summed."""
    merged = []
    for row in rows:
        lab = row["lab"]
        if lab not in measured or lab == "00":    # lab 00's row is the downloads: their size, not the lab's time
            merged.append(row)
            continue
        if merged and merged[-1]["lab"] == lab:
            merged[-1]["what"] += " + " + row["what"]
            merged[-1]["disk_gb"] = round(merged[-1]["disk_gb"] + row["disk_gb"], 1)
            continue
        ram = measured[lab]["peak_rss_bytes"]
        merged.append({**row, "minutes": measured[lab]["minutes"], "peak_ram_gb": round(ram / GB, 1),
                       "basis": measured[lab]["basis"]})
    for row in merged:
        row["fits_here"] = "yes" if (row["peak_ram_gb"] * GB <= here["available_ram_bytes"]
                                     and row["disk_gb"] * GB <= here["free_disk_bytes"]) else "no"
    return merged



class DoesNotFit(LabkitError, RuntimeError):
    """A profile's labs need more memory or disk than this machine has; the message names what. Lab 00."""


def refuse_unless_fits(rows: list[dict], profile: str | None = None) -> None:
    """Stop a laptop or gpu run, before any download or build, when a lab of `lab_plan` does not fit. Lab 00.

    The memory compared is what this process may really use: a cgroup's (container's) limit where one is set,
    not only the machine's RAM (`labkit.sizing.machine`). The cpu profile's needs are small: never refused."""
    prof = get_profile(profile)
    short = [row for row in rows if row["fits_here"] == "no" and not row["what"].startswith(OPTIONAL)]
    if prof.name == "cpu" or not short:
        return
    here = sizing.machine()
    ram, disk = here["available_ram_bytes"] / GB, here["free_disk_bytes"] / GB
    limited = " (a cgroup limit: the container or `systemd-run -p MemoryMax=` caps it)" \
        if here["memory_limited_by"] == "cgroup" else ""
    missing = []
    for row in short:
        if row["peak_ram_gb"] > ram:
            missing.append(f"lab {row['lab']} ({row['what']}) needs {row['peak_ram_gb']} GB of RAM")
        if row["disk_gb"] > disk:
            missing.append(f"lab {row['lab']} ({row['what']}) needs {row['disk_gb']} GB of disk")
    raise DoesNotFit(
        f"The {prof.name} profile does not fit this machine: {'; '.join(missing)}. Available now: {ram:.1f} GB of "
        f"RAM{limited}, {disk:.1f} GB of disk at the model cache. Nothing was downloaded or built. Fix: close "
        "other programs or free disk (LABKIT_CACHE points the cache at another disk), run on a bigger machine, "
        "or use profile='cpu' (the tiny models).")


def training_model(profile: str, model: str, calibration_pairs: int, lora_steps: int,
                   full_size_training: bool = False) -> tuple[str, str]:
    """The model lab 03 trains in `profile`, and why: on a laptop CPU, the tiny one unless asked. Lab 03.

    Returns `(model, message)`; the message (empty when nothing changes) gives the estimate."""
    prof = get_profile(profile)
    if prof.name != "laptop" or model != prof.text_model or full_size_training:
        return model, ""
    cost = sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), calibration_pairs, lora_steps)
    measured = _measured_training_minutes()
    shorter = f" ({measured:.0f} min measured on this kind of CPU)" if measured else ""
    return "tiny", (f"AWQ ({calibration_pairs} pairs) + {lora_steps} LoRA steps of {model} in float32 on this CPU: "
                    f"about {cost['hours']:.1f} h ({cost['basis']}). This lab runs on the tiny model instead, so its "
                    "adapters belong to the tiny model (lab 04 uses them there, and chats with your INT4 "
                    "Phi-3.5-mini from lab 01 apart); set full_size_training = True to run it on Phi-3.5-mini "
                    f"with full_size_recipe, a bfloat16 recipe that fits a laptop{shorter}, or use the gpu profile.")


def _measured_training_minutes() -> float | None:
    """AWQ + fine-tune + export of Phi-3.5-mini with the full-size recipe, from `make laptop-training`."""
    if not LAPTOP_TRAINING_SHEET.exists():
        return None
    sheet = paths.read_json(LAPTOP_TRAINING_SHEET, "restore it with git or rerun `make laptop-training`")
    return sum(row["minutes"] for row in sheet["training"]["steps"])


def chat_model(profile: str, travel_dir: Path, travel_adapter: Path | None,
               adapter_base: str) -> tuple[Path, Path | None, str]:
    """The model lab 04 chats with: lab 03's, with its travel adapter, when lab 03 trained the profile's own model;
    else (a laptop, where lab 03 trains the tiny model) lab 01's INT4 build of the model lab 01 built in this profile
    (Phi-4-mini when lab 01 ran with it), or of the profile's model. Lab 04.

    Returns `(model folder, its adapter or None, one line saying which model does what)`."""
    from ..making import build

    prof = get_profile(profile)
    if adapter_base == prof.text_model or prof.name == "cpu":
        return travel_dir, travel_adapter, (f"chat model: {paths.shown(travel_dir)} (lab 03's {adapter_base} model, "
                                            "with its travel adapter); the adapter sections use the same model")
    built = results.find("01_builder_quantization", "model", profile=prof.name) or prof.text_model
    chat = build.build(built, "int4", prof.execution_provider, progress=False, **prof.quantized)
    return chat.path, None, (f"chat model: {paths.shown(chat.path)} (lab 01's INT4 build of {built}, no adapter); the "
                             f"adapter sections use lab 03's {adapter_base} model, which the adapters belong to: "
                             f"{travel_dir}")


def step_costs(awq_dir: Path, finetuned, onnx_dir: Path, since: float):
    """Minutes and peak memory (this process and its children) of lab 03's three steps, as a table. Lab 03.

    A step made before `since` (a timestamp: the lab's start) came from the cache; its row says so and shows what it
    cost when it was made."""
    import pandas as pd

    rows = []
    for step, info_file in (("AWQ", Path(awq_dir) / "awq_info.json"),
                            ("LoRA fine-tune", Path(finetuned.adapter).parent / "finetune_info.json"),
                            ("ONNX export with adapter", Path(onnx_dir) / "labkit_export.json")):
        info = json.loads(info_file.read_text(encoding="utf-8"))
        rows.append({"step": step, "minutes": round(info["seconds"] / 60, 1),
                     "peak memory GB": round(info.get("peak_rss_bytes", 0) / GB, 1),
                     "this run": "made" if info_file.stat().st_mtime >= since else "cached (made earlier)"})
    return pd.DataFrame(rows).set_index("step")
