"""`make bench-scale`: Phi-3.5-mini at its real size on this CPU, measured on a shadow checkpoint. Lab 01.

For each precision the model builder runs in a child process (`python -m labkit build`) so that its
wall time and the peak resident memory of its whole process tree are measured (`labkit.memwatch`);
then the build's folder size, load time, prefill and decode tokens/second (medians after a warm-up,
bare og loop) and decode as a fraction of the memory-bandwidth bound: bytes of weights one decode
step reads (every MatMul weight and the LM head, not the embedding table, of which one row is read)
times tokens/second, over the read bandwidth measured in the same run (or a faster decode's: `with_bound`).

`layers=N` (N < 32) measures shadows of N/2 and N layers and extrapolates each quantity linearly to
the full depth (every decoder layer costs the same); such rows say `"extrapolated": true`.
A precision whose build would not fit in this machine's available memory is not started; its row
gives the requirement (`sizing.build_requirement`) instead. A run the disk cannot hold is refused before its
first build (`check_disk`); the full-size FP32 build (15 GB) is deleted once measured.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..core import paths, sizing
from ..core.errors import LabkitError
from ..core.profiles import PROFILES
from ..making import build, shadow
from . import bench, phi4_mini
from .bound import bound_line, with_bound

PRECISIONS = ("int4", "int8", "fp32")
LAPTOP = ("--profile", "laptop")     # INT4 as the laptop profile builds it (blocks of 128, last-position logits)
FIELDS = ("size_bytes", "build_seconds", "peak_rss_bytes", "load_seconds", "prefill_tok_s", "decode_tok_s")


class ScaleError(LabkitError, RuntimeError):
    """A measurement that could not run; the message says why and what to do. Lab 01."""


def _in_child(command: str, model_dir: Path, precision: str, force: bool = True, options: tuple = ()) -> dict:
    """`python -m labkit COMMAND MODEL --precision P --json [--force]` in a fresh process: its output folder,
    size, wall time and the peak memory of its whole process tree (`force` False: a cached output is reused, and
    its time is the cache check's). Lab 01 (and lab 02)."""
    from . import memwatch

    run = memwatch.run([sys.executable, "-m", "labkit", command, str(model_dir), "--precision", precision,
                        "--json", *(["--force"] if force else []), *options])
    if run.returncode != 0:
        raise ScaleError(f"`labkit {command}` ({precision}) of {model_dir} failed (exit {run.returncode}):\n"
                         f"{run.output[-2000:]}")
    info = json.loads(run.output.strip().splitlines()[-1])
    return {"dir": info["dir"], "size_bytes": info["size_bytes"], "build_seconds": round(run.seconds, 2),
            "peak_rss_bytes": run.peak_rss_bytes, "peak_anon_bytes": run.peak_anon_bytes}


def _measure_speed(build_dir: Path, runs: int, prompt_tokens: int, new_tokens: int) -> dict:
    """Load time and median prefill/decode tokens per second of one build. Lab 01."""
    # Two fresh loads, the faster one: the first may also be paying for a cold page cache.
    first, loaded = bench.load_seconds(build_dir)
    del loaded
    second, loaded = bench.load_seconds(build_dir)
    return {"load_seconds": round(min(first, second), 2),
            "weight_bytes_per_token": bench.weight_bytes_per_token(build_dir),
            **bench.speed(build_dir, prompt_tokens=prompt_tokens, new_tokens=new_tokens, runs=runs, loaded=loaded)}


def measure_depth(layers: int | None, precision: str, runs: int, prompt_tokens: int, new_tokens: int,
                  progress: bool = True, name: str = "phi-3.5-mini") -> dict:
    """Everything `bench-scale` reports for one shadow depth and precision (measured, not extrapolated). Lab 01."""
    model_dir = shadow.create_shadow(name, layers, progress=progress)
    # Whether it fits was decided once, before anything ran: what this process holds by now (Python, torch, the
    # shadows it wrote) is not what a laptop's build would share its memory with.
    row = _in_child("build", model_dir, precision, options=(*LAPTOP, "--no-memory-check"))
    row.update(_measure_speed(Path(row["dir"]), runs, prompt_tokens, new_tokens))
    return row


_IMAGES = {"336x336": (336, 336), "1344x1008": (1344, 1008)}   # a square crop-sized image, a 4:3 photo
PHOTO = "1344x1008"


def _sample_image(folder: Path, width: int, height: int) -> Path:
    """A deterministic RGB test image of this size (image cost depends on size only). Lab 02."""
    import numpy as np
    from PIL import Image

    path = Path(folder) / f"sample-{width}x{height}.png"
    if not path.exists():
        pixels = (np.indices((height, width, 3)).sum(0) * 7 % 256).astype("uint8")
        Image.fromarray(pixels, "RGB").save(path)
    return path


def measure_vision(layers: int | None = None, vision_layers: int | None = None, runs: int = 1,
                   warmup: bool = True, progress: bool = True, fresh: bool = True) -> dict:
    """Phi-3.5-vision shadow: export (the default image encoder, int8 on the CPU; INT4 decoder) time and peak memory;
    per test image the image tokens and the latency of vision + prefill (the first token), median of `runs` after
    a warm-up (`warmup` False skips it: each image prompt prefills thousands of tokens; `fresh` False reuses a
    cached export instead of timing a new one); the 4:3 photo again through the fp32-encoder export. Lab 02."""
    import tempfile

    model_dir = shadow.create_shadow("phi-3.5-vision", layers, vision_layers=vision_layers, progress=progress)
    # The default export (int8 image encoder on the CPU), timed fresh: the fp32 export and its quantization
    row = {"checkpoint": str(model_dir), **_in_child("export-vision", model_dir, "int4", force=fresh,
                                                          options=(*LAPTOP, "--no-memory-check")),
           "images": {}}
    info = json.loads((Path(row["dir"]) / "export_info.json").read_text(encoding="utf-8"))
    row["encoder"] = info.get("encoder", "fp32")
    # What lab 02 exported before: the fp32 encoder and the builder's default INT4 decoder (blocks of 32)
    fp32 = _in_child("export-vision", model_dir, "int4", force=False,
                     options=("--encoder", "fp32", "--no-memory-check"))
    row["fp32_encoder"] = {"dir": fp32["dir"], "size_bytes": fp32["size_bytes"], "images": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (width, height) in _IMAGES.items():
            image = _sample_image(Path(tmp), width, height)
            row["images"][label] = _first_token_split(row["dir"], image, runs, warmup)
        # The bar's comparison: the 4:3 photo through the export before (fp32 encoder, blocks of 32), in this run
        photo = _sample_image(Path(tmp), *_IMAGES[PHOTO])
        row["fp32_encoder"]["images"][PHOTO] = _first_token_split(fp32["dir"], photo, runs, warmup)
    row["photo_first_token_vs_fp32_encoder"] = (row["images"][PHOTO]["vision_prefill_seconds"]
                                                / row["fp32_encoder"]["images"][PHOTO]["vision_prefill_seconds"])
    return row


def _first_token_split(folder: str, image: Path, runs: int, warmup: bool) -> dict:
    """One image prompt's first token (median of `runs` after an optional warm-up) and its split. Lab 02."""
    import statistics

    from ..runtime import generate, images

    try:
        answers = [images.ask(folder, "What is in the picture?", [image], max_new_tokens=1)
                   for _ in range(runs + warmup)][warmup:]
        first_token = statistics.median(a.time_to_first_token for a in answers)
        encoder = images.vision_seconds(folder, image, runs=runs)
    finally:
        # Each measurement starts from an empty process: two Phi-3.5-vision exports at once (the default and the
        # fp32-encoder one) plus a 2K-token prefill went past 16 GB and were killed in the 16 GB cgroup
        generate.unload()
    # The split: the image encoder alone (timed apart, on the same threads), the rest of the first token
    # (the embedding step and the prefill of the whole prompt)
    return {"image_tokens": answers[0].image_tokens, "prompt_tokens": answers[0].prompt_tokens,
            "vision_prefill_seconds": first_token, "vision_seconds": encoder,
            "embedding_prefill_seconds": max(first_token - encoder, 0.0)}


def extrapolate(low: dict, high: dict, low_layers: int, high_layers: int, target: int) -> dict:
    """Per-layer linear extrapolation of two depths' measurements to `target` layers. Lab 01.

    Sizes, seconds and memory grow linearly with depth; for speeds, the time per token does."""
    def line(a: float, b: float) -> float:
        slope = (b - a) / (high_layers - low_layers)
        return a + slope * (target - low_layers)

    # Costs never shrink with depth: measurement noise between two shallow copies must not make a
    # slope negative, so each extrapolated cost is at least the deeper copy's.
    out = {}
    for key in ("size_bytes", "build_seconds", "peak_rss_bytes", "peak_anon_bytes", "load_seconds",
                "weight_bytes_per_token"):
        if key in low and key in high:
            out[key] = max(line(low[key], high[key]), high[key])
    for key in ("prefill_tok_s", "decode_tok_s"):
        out[key] = 1.0 / max(line(1.0 / low[key], 1.0 / high[key]), 1.0 / high[key])
    for key in ("size_bytes", "peak_rss_bytes", "peak_anon_bytes"):
        if key in out:
            out[key] = int(out[key])
    out["weight_bytes_per_token"] = int(out["weight_bytes_per_token"])
    return out


def run_bench_scale(layers: int | None = None, precisions=PRECISIONS, runs: int = 3, prompt_tokens: int = 128,
                    new_tokens: int = 32, out: Path | None = None, progress: bool = True,
                    vision: bool = False, phi4: bool = False, contexts=phi4_mini.CONTEXTS) -> dict:
    """The `make bench-scale` suite. Prints a table, writes `runs/bench-scale.json`, returns the result. Lab 01.

    `phi4`: also Phi-4-mini's shadow (INT4, measured as Phi-3.5-mini's, at the same depth), and for both INT4
    builds the KV cache per token and the decode speed after each of `contexts` tokens of prompt."""
    full = shadow.shadow_config("phi-3.5-mini")["num_hidden_layers"]
    layers = None if layers in (None, full) else layers
    config = shadow.shadow_config("phi-3.5-mini", layers)
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ScaleError(f"Unknown precision {precision!r} for bench-scale; choose from {', '.join(PRECISIONS)}.")
    if phi4 and "int4" not in precisions:
        raise ScaleError("--phi4 compares INT4 builds: keep int4 among --precisions.")
    if layers is not None and layers < 2:
        raise ScaleError("--layers must be at least 2 (shadows of layers/2 and layers are measured to extrapolate).")
    # Builds that cannot fit are skipped, not counted. The measured peaks count the checkpoint's memory-mapped pages
    # (the kernel can drop them), so they are held to the memory limit, not to what is free while this runs.
    available = sizing.memory_limit_bytes()
    fits = [p for p in precisions if sizing.build_requirement(p, config)["peak_rss_bytes"] <= available]
    phi4_need = sizing.build_requirement("int4", shadow.shadow_config("phi-4-mini", layers))["peak_rss_bytes"]
    if phi4 and phi4_need > available:
        print(f"Phi-4-mini skipped: its INT4 build needs ≈ {phi4_need / 1e9:.1f} GB of RAM, "
              f"this machine has {available / 1e9:.1f} GB")
    phi4 = phi4 and "int4" in fits and phi4_need <= available
    vision_need = sizing.vision_export_requirement(shadow.shadow_config("phi-3.5-vision", layers))["peak_rss_bytes"]
    if vision and vision_need > available:
        print(f"Phi-3.5-vision skipped: its export needs ≈ {vision_need / 1e9:.1f} GB of RAM, "
              f"this machine has {available / 1e9:.1f} GB")
    vision = vision and vision_need <= available
    check_disk(layers, fits, vision, phi4)
    bandwidth = bench.memory_bandwidth()
    result = {"model": "phi-3.5-mini", "shadow_of": shadow.ARCHITECTURES["phi-3.5-mini"]["hub_id"],
              "layers": full, "measured_layers": [layers // 2, layers] if layers else [full],
              "extrapolated": layers is not None,
              "parameters": shadow.count_parameters(shadow.shadow_config("phi-3.5-mini")),
              "checkpoint": str(shadow.create_shadow("phi-3.5-mini", layers, progress=progress)),
              "machine": sizing.machine(), "memory_bandwidth_gb_s": bandwidth,
              "threads": os.cpu_count(), "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
              "kv_cache_bytes_per_token": sizing.kv_cache_bytes_per_token(shadow.shadow_config("phi-3.5-mini")),
              "measured_on": time.strftime("%Y-%m-%d"), "quantized": PROFILES["laptop"].quantized}
    for precision in precisions:
        if precision not in fits:
            need = sizing.build_requirement(precision, config)
            result[precision] = {"skipped": f"the build needs ≈ {need['peak_rss_bytes'] / 1e9:.1f} GB of RAM "
                                            f"({need['basis']}); this machine has {available / 1e9:.1f} GB",
                                 "required_peak_rss_bytes": need["peak_rss_bytes"],
                                 "required_size_bytes": need["size_bytes"]}
            continue
        if layers:
            low = measure_depth(layers // 2, precision, runs, prompt_tokens, new_tokens, progress)
            high = measure_depth(layers, precision, runs, prompt_tokens, new_tokens, progress)
            row = {"dir": high["dir"], **extrapolate(low, high, layers // 2, layers, full), "extrapolated": True,
                   "measured": {str(layers // 2): low, str(layers): high}}
        else:
            row = {**measure_depth(None, precision, runs, prompt_tokens, new_tokens, progress), "extrapolated": False}
        result[precision] = row
        if precision == "fp32":     # 15 GB at full size that nothing else uses: measured, then given back
            shutil.rmtree(row["dir"], ignore_errors=True)
    if phi4 and "dir" in result["int4"]:   # at Phi-3.5-mini's deepest measured depth (the context runs need its build)
        row = measure_depth(layers, "int4", runs, prompt_tokens, new_tokens, progress, name="phi-4-mini")
        result["phi-4-mini"] = phi4_mini.summary(row, layers)
        phi35_build = result["int4"]["dir"]
        # Self-contained, so the section can join another run's file (the committed reference) and still compare
        # the two models within one run.
        limited = result["machine"]["memory_limited_by"] == "cgroup"
        result["phi-4-mini"].update(measured_on=result["measured_on"], machine=result["machine"],
                                    memory_bandwidth_gb_s=bandwidth, phi35_int4_same_run=dict(result["int4"]),
                                    memory_limit_bytes=sizing.memory_limit_bytes() if limited else None)
        switch = config["original_max_position_embeddings"]   # the same 4096 for both
        result["context_decode"] = {
            "layers": layers or full, "switch_at": switch,
            "phi-3.5-mini": phi4_mini.context_decode(Path(phi35_build), contexts, switch_at=switch),
            "phi-4-mini": phi4_mini.context_decode(Path(result["phi-4-mini"]["int4"]["dir"]), contexts,
                                                   switch_at=switch)}
    if vision:
        result["vision"] = measure_vision(layers, runs=1, progress=progress)
    with_bound(result)
    out = Path(out) if out else paths.runs_root() / "bench-scale.json"
    if out.resolve() == REFERENCE.resolve():      # committed: no folder names of this machine
        result = _without_local_paths(result)
    paths.write_json_atomic(out, result)
    print(format_scale(result))
    print(f"\nwritten to {out}")
    return result


def _laptop_label(precision: str) -> str:
    """The label (`build.BuildOptions.name`) of a `--profile laptop` build of this precision. Lab 01."""
    options = PROFILES["laptop"].quantized if precision in ("int4", "int8") else {}
    return build.BuildOptions(precision, **{k: v for k, v in options.items() if k != "extra"}).name


def disk_needed(layers: int | None, precisions=PRECISIONS, vision: bool = False, phi4: bool = False) -> dict:
    """Bytes of disk `run_bench_scale` needs with these arguments, by part, estimated from the measured builds
    (`sizing`) before anything starts. Lab 01.

    Shadows still to create and outputs the cache does not hold yet add up; an output it holds is rebuilt beside the
    old copy and then replaces it, as is the FP32 build deleted once measured: of those, one at a time."""
    import re

    depths = [layers // 2, layers] if layers else [None]
    planned = []          # (shadow name, depth, folder kind, build label the folder is named by, bytes)
    for depth in depths:
        for p in precisions:
            size = sizing.build_requirement(p, shadow.shadow_config("phi-3.5-mini", depth))["size_bytes"]
            planned.append(("phi-3.5-mini", depth, "builds", _laptop_label(p), size))
    if phi4:
        size = sizing.build_requirement("int4", shadow.shadow_config("phi-4-mini", layers))["size_bytes"]
        planned.append(("phi-4-mini", layers, "builds", _laptop_label("int4"), size))
    if vision:
        vision_config = shadow.shadow_config("phi-3.5-vision", layers)
        export = sizing.vision_export_requirement(vision_config)["size_bytes"]
        decoder = sizing.build_requirement("int4", sizing.text_config(vision_config))["size_bytes"]
        # the default export and the fp32-encoder one (the builder's default INT4), each with its decoder
        for label in (_laptop_label("int4"), build.BuildOptions("int4").name):
            planned += [("phi-3.5-vision", layers, "vision", label, export),
                        ("phi-3.5-vision", layers, "builds", f"text-{label}", decoder)]
    new, replaced = 0, [0]
    for name, depth, kind, label, size in planned:
        # cache.cached_step names each output folder `<shadow>-<label>-<12 hex digits of its key>`
        pattern = re.escape(f"{shadow.folder_name(name, depth)}-{label}-") + "[0-9a-f]{12}"
        folder = paths.cache_dir() / kind
        held = folder.is_dir() and any(re.fullmatch(pattern, f.name) for f in folder.iterdir())
        if held or label.startswith("fp32"):
            replaced.append(size)
        else:
            new += size
    to_create = [("phi-3.5-mini", d) for d in depths] + [("phi-4-mini", layers)] * phi4 \
        + [("phi-3.5-vision", layers)] * vision
    shadows = sum(shadow.bytes_to_create(name, depth) for name, depth in to_create)
    return {"shadows": shadows, "new builds and exports": new, "one rebuild at a time": max(replaced)}


def check_disk(layers: int | None, precisions=PRECISIONS, vision: bool = False, phi4: bool = False) -> None:
    """Refuse a `make bench-scale` the model cache's disk cannot hold, before its first build. Lab 01."""
    parts = disk_needed(layers, precisions, vision, phi4)
    root = paths.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if sum(parts.values()) > free:
        listed = ", ".join(f"{name} {size / 1e9:.1f} GB" for name, size in parts.items() if size)
        raise ScaleError(f"Not enough disk for this bench-scale run: it writes about {sum(parts.values()) / 1e9:.0f} "
                         f"GB ({listed}) and {root} has {free / 1e9:.1f} GB free. Free space (earlier builds in "
                         f"{root / 'builds'} are rebuilt when needed), set LABKIT_CACHE to a bigger disk, or measure "
                         "less (--precisions int4 int8; without --vision or --phi4).")


def _without_local_paths(value):
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items() if k not in ("dir", "checkpoint")}
    return value


def _table_rows(result: dict) -> list[dict]:
    """One row per precision for tables (the report, lab 01): GB, seconds, tok/s. Lab 01."""
    rows = []
    for precision in PRECISIONS:
        row = result.get(precision)
        if not row:
            continue
        if "skipped" in row:
            rows.append({"precision": precision, "note": row["skipped"]})
            continue
        rows.append({"precision": precision, "size_gb": row["size_bytes"] / 1e9,
                     "build_min": row["build_seconds"] / 60, "build_peak_ram_gb": row["peak_rss_bytes"] / 1e9,
                     **({"build_peak_anon_gb": row["peak_anon_bytes"] / 1e9} if "peak_anon_bytes" in row else {}),
                     "load_s": row["load_seconds"], "prefill_tok_s": row["prefill_tok_s"],
                     "decode_tok_s": row["decode_tok_s"], "bandwidth_fraction": row["bandwidth_fraction"],
                     "note": "extrapolated from " + " and ".join(row["measured"]) + " layers"
                     if row.get("extrapolated") else "measured"})
    return rows


def format_scale(result: dict) -> str:
    """The printed table of `make bench-scale`. Lab 01."""
    depth = f"{result['layers']} layers"
    if result["extrapolated"]:
        depth += ", extrapolated from " + " and ".join(map(str, result["measured_layers"])) + " layers"
    head = (f"{result['model']} shadow ({result['parameters'] / 1e9:.2f}B parameters, {depth}); "
            f"{result['threads']} threads; {bound_line(result)}"
            + (f"; int8 instructions: {result['machine']['int8_instructions']}"
               if "int8_instructions" in result.get("machine", {}) else ""))
    lines = [head, f"{'':6} {'size GB':>8} {'build min':>9} {'peak RAM GB':>11} {'anonymous':>9} {'load s':>7} "
                   f"{'prefill':>8} {'decode':>7} {'of bound':>8}"]
    for row in _table_rows(result):
        if "size_gb" not in row:
            lines.append(f"{row['precision']:6} not built: {row['note']}")
            continue
        anon = f"{row['build_peak_anon_gb']:9.1f}" if "build_peak_anon_gb" in row else f"{'-':>9}"
        lines.append(f"{row['precision']:6} {row['size_gb']:8.2f} {row['build_min']:9.1f} "
                     f"{row['build_peak_ram_gb']:11.1f} {anon} {row['load_s']:7.1f} {row['prefill_tok_s']:8.1f} "
                     f"{row['decode_tok_s']:7.1f} {row['bandwidth_fraction']:8.2f}")
    lines += phi4_mini.lines(result)
    lines += vision_lines(result.get("vision"))
    return "\n".join(lines)


def vision_lines(row: dict | None) -> list[str]:
    """The Phi-3.5-vision part of the printed table (empty without a vision measurement). Lab 02."""
    if not row:
        return []
    decoder = "the laptop's INT4 decoder" if "fp32_encoder" in row else "INT4 decoder in blocks of 32"
    lines = [f"vision export ({row.get('encoder', 'fp32')} image encoder, {decoder}): "
             f"{row['size_bytes'] / 1e9:.2f} GB, {row['build_seconds'] / 60:.1f} min, "
             f"peak RAM {row['peak_rss_bytes'] / 1e9:.1f} GB"
             + (f" ({row['peak_anon_bytes'] / 1e9:.1f} GB anonymous)" if row.get("peak_anon_bytes") else "")]
    for label, image in row["images"].items():
        split = (f" (image encoder {image['vision_seconds']:.1f} s, embedding + prefill "
                 f"{image['embedding_prefill_seconds']:.1f} s)" if "vision_seconds" in image else "")
        lines.append(f"  image {label:>9}: {image['image_tokens']} image tokens, first token "
                     f"{image['vision_prefill_seconds']:.1f} s{split}")
    for label, image in row.get("fp32_encoder", {}).get("images", {}).items():
        lines.append(f"  image {label:>9}, fp32 image encoder and INT4 in blocks of 32: first token "
                     f"{image['vision_prefill_seconds']:.1f} s (image encoder {image['vision_seconds']:.1f} s, "
                     f"embedding + prefill {image['embedding_prefill_seconds']:.1f} s); the default export takes "
                     f"{row['photo_first_token_vs_fp32_encoder']:.2f} of it")
    return lines


REFERENCE = paths.REPO / "docs" / "measured" / "bench-scale.json"   # `make bench-scale-reference` writes it


def read(path: Path | None = None, reference: bool = True) -> dict | None:
    """The results of the last `make bench-scale` (`runs/bench-scale.json`); without one, the course's reference
    measurements (`docs/measured/bench-scale.json`, marked `"reference": True`), or None. Lab 01 (and lab 05).

    So a course run shows Phi-3.5-mini at real size even where no one has run the benchmark (over an hour) yet."""
    path = Path(path) if path else paths.runs_root() / "bench-scale.json"
    return paths.read_run_or_reference(path, REFERENCE if reference else None,
                                       "run `make bench-scale` (or `make bench-scale-quick`) again")


def source_line(result: dict) -> str:
    """Where the numbers of a bench-scale result come from, in one line for the labs. Lab 01."""
    machine = result.get("machine", {})
    memory = "memory limit" if machine.get("memory_limited_by") == "cgroup" else "RAM"
    where = (f"{machine.get('cores', '?')} cores, {machine.get('total_ram_bytes', 0) / 1e9:.0f} GB {memory}, "
             + (f"int8 instructions: {machine['int8_instructions']}, " if "int8_instructions" in machine else "")
             + f"measured {result.get('measured_on', 'on an unknown date')}")
    how = "extrapolated from shallower shadows" if result.get("extrapolated") else "all 32 layers"
    blocks = result.get("quantized", {}).get("block_size")
    builds = (f" INT4 and INT8 as the laptop profile builds them (blocks of {blocks}, last-position logits)." if blocks
              else " INT4 and INT8 in the builder's default blocks of 32 (a run from before the laptop profile).")
    if "memory_bandwidth_gb_s" in result:
        builds += f" Decode against the memory-bandwidth bound: {bound_line(result)}."
    if result.get("reference"):
        return (f"The course's reference measurements ({where}; {how}). `make bench-scale` measures this machine "
                "and replaces them." + builds)
    return f"Measured on this machine by `make bench-scale` ({where}; {how})." + builds


def table(result: dict):
    """`_table_rows` as a DataFrame indexed by precision, rounded for reading. Lab 01 (and lab 05)."""
    import pandas as pd

    return pd.DataFrame(_table_rows(result)).set_index("precision").round(2)


def plot_scale(result: dict, laptop_ram_gb: float = 16.0):
    """Peak build memory and decode speed per precision, against a 16 GB laptop's RAM. Lab 01 (and lab 05)."""
    import matplotlib.pyplot as plt

    rows = [r for r in _table_rows(result) if "size_gb" in r]
    fig, (ram_ax, speed_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    names = [r["precision"] for r in rows]
    ram_ax.bar(names, [r["build_peak_ram_gb"] for r in rows], color="#1f77b4")
    ram_ax.axhline(laptop_ram_gb, ls="--", color="gray", label=f"{laptop_ram_gb:.0f} GB laptop")
    ram_ax.set(ylabel="GB", title="Peak RAM of the build")
    ram_ax.legend()
    speed_ax.bar(names, [r["decode_tok_s"] for r in rows], color="#2ca02c")
    speed_ax.set(ylabel="tokens/s", title=f"Decode, {result['threads']} threads")
    for ax in (ram_ax, speed_ax):
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Phi-3.5-mini at real size ({'extrapolated' if result['extrapolated'] else 'measured'})")
    fig.tight_layout()
    return fig
