"""What each lab needs in a profile, before anything is downloaded or built; lab 03's choice of model.

Lab 00 shows `lab_plan(profile)`: per lab, the RAM, disk and minutes it needs and whether this
machine has them now, from the measurements in `labkit.sizing` (full-size shadows of Phi-3.5) and
the profile's downloads (`labkit.hub`). Lab 03 asks `training_model` whether to train the real
model or, on a laptop CPU where that takes hours, the tiny one.
"""

from __future__ import annotations

from ..core import sizing
from ..core.profiles import get_profile
from ..core.sizing import GB, PROCESS_OVERHEAD_BYTES
from ..making import hub, shadow

# What each lab of a profile needs, for lab 00's plan. cpu: measured `make course` on 2 cores (docs/course-results.md).
# laptop: lab 01 from labkit.sizing's shadow measurements; inference from loading and running the INT4 shadow
# build; lab 02 from the vision shadow's export; lab 03 runs the tiny model on a laptop CPU (AWQ and LoRA of 3.8B
# parameters take hours there: labkit.sizing.training_estimate).
_CPU_LABS = {"00": (0.1, 0.5, 0.02), "01": (0.5, 1.0, 0.1), "02": (0.4, 1.0, 0.03), "03": (5.1, 2.1, 0.1),
            "04": (1.8, 1.5, 0.02), "05": (0.1, 0.5, 0.0)}     # lab: (minutes, peak RAM GB, disk GB)
VISION_PROMPT_RSS_BYTES = 8_718_000 * 1024   # one 1344x1008 image prompt on the full-size vision export
_INT4_INFERENCE_RSS_BYTES = int(3.4 * GB)    # a plain og script: load + 64-token greedy run, INT4 shadow build


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

    if prof.name == "cpu":
        for lab, (minutes, ram, disk) in _CPU_LABS.items():
            row(lab, "tiny models, CPU", minutes, ram * GB, disk * GB, "measured: make course, 2 cores")
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
        row("02", "export Phi-3.5-vision (fp32 vision, INT4 decoder), ask about images", export["minutes"] + 5,
            max(export["peak_rss_bytes"], VISION_PROMPT_RSS_BYTES), export["size_bytes"],
            export["basis"] + "; an image prompt: 8.9 GB, over a minute to the first token")
        hours = sizing.training_estimate(mini, 128, 120)["hours"]
        row("03", f"AWQ + LoRA on the tiny model (Phi-3.5-mini: ≈ {hours:.0f} h on this kind of CPU)",
            _CPU_LABS["03"][0], _CPU_LABS["03"][1] * GB, _CPU_LABS["03"][2] * GB,
            "measured on the tiny model; full_size_training=True overrides")
        row("04", "chat with the INT4 build", 5, _INT4_INFERENCE_RSS_BYTES, 0,
            "measured: INT4 shadow build loaded and generating")
    else:   # gpu: estimates (no GPU machine has run the course yet)
        row("01", "build Phi-3.5-mini FP16 / INT4 / FP32 on CUDA", 20, 20 * GB, 25 * GB, "estimate")
        row("02", "export Phi-3.5-vision", 10, 24 * GB, 10 * GB, "estimate")
        row("03", "AWQ + LoRA + Olive on CUDA", 20, 24 * GB, 20 * GB, "estimate")
        row("04", "inference on CUDA", 2, 8 * GB, 0, "estimate")
    row("05", "the report", 0.1, PROCESS_OVERHEAD_BYTES, 0, "measured")
    return rows



def training_model(profile: str, model: str, calibration_pairs: int, lora_steps: int,
                   full_size_training: bool = False) -> tuple[str, str]:
    """The model lab 03 trains in `profile`, and why: on a laptop CPU, the tiny one unless asked. Lab 03.

    Returns `(model, message)`; the message (empty when nothing changes) gives the estimate."""
    prof = get_profile(profile)
    if prof.name != "laptop" or model != prof.text_model or full_size_training:
        return model, ""
    cost = sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), calibration_pairs, lora_steps)
    return "tiny", (f"AWQ ({calibration_pairs} pairs) + {lora_steps} LoRA steps of {model} on this CPU: about "
                    f"{cost['hours']:.1f} h ({cost['basis']}). This lab runs on the tiny model instead; set "
                    "full_size_training = True to run it on Phi-3.5-mini, or use the gpu profile.")
