"""Export a Phi-3.5-vision checkpoint to an onnxruntime-genai multimodal folder: three ONNX models. Lab 02.

The vision encoder and the embedding step are exported with `torch.onnx.export`; the decoder is a
model-builder build (`exclude_embeds=true`). genai_config.json and processor_config.json tie them
together; `labkit.images` asks the result questions and `labkit.vision_verify` checks it against PyTorch.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

from ..core import cache, children, paths, sizing
from ..runtime.images import CROP, CROPS, EMBEDDING_FILE, TEXT_FILE, TOKENS_PER_CROP, VISION_FILE, VisionError
from . import build
from .vision_checkpoint import EXPORT_FORMAT, checked_config, read_vision_part, resolve, text_checkpoint
from .vision_encoder import embedding_model


def _export_onnx(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # CLIP's size check is traced as a constant: right, since every crop is 336 x 336.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False, external_data=False)


def _sample_inputs():
    """Example pixel_values / image_sizes for two images (672x1008 and 336x336). Lab 02."""
    import torch

    return torch.randn(2, CROPS, 3, CROP, CROP), torch.tensor([[672, 1008], [336, 336]], dtype=torch.int64)


# The decoder's model-builder options. `prune_lm_head`: the prefill computes logits for the last position only,
# the one generation reads (nothing here scores an image prompt's other positions). An image prompt is ~1,900
# positions, so this skips an LM head of 3072 x 32064 over all but one of them: 248 MB of logits and, measured on a
# 1-layer Phi-3.5-vision shadow (2 cores), 2.2 of 4.7 s of its prefill; at full size ~3 % of the prefill.
DECODER_OPTIONS = {"exclude_embeds": "true", "filename": TEXT_FILE, "prune_lm_head": "true"}

# The image encoder's graph, in the export's cache key: 2 encodes only the crops the layout reads
# (`vision_encoder._used_crops`), not the processor's zero padding.
ENCODER_GRAPH = 2

# Above this many decoder parameters the export runs in a process of its own: the memory PyTorch and the builder
# took (up to 8 GB for Phi-3.5-vision) goes back to the system when it ends, not to this process's allocator, so a
# notebook that asks the exported model questions next still fits a 16 GB laptop.
CHILD_PROCESS_PARAMETERS = 1_000_000_000

# The image encoder's weights. int8: onnxruntime's dynamic quantization of its MatMuls (int8 weights per output
# channel, activations quantized at run time). Measured on a Phi-3.5-vision shadow with all 24 CLIP layers (2 cores,
# AVX-512 VNNI, a 4:3 photo's 13 used crops): 29 s -> 10 s, a quarter of the size, features within 1.8 % (relative
# L2; random weights). CPU only: on CUDA onnxruntime runs the dynamic-quantization ops on the CPU.
ENCODERS = ("int8", "fp32")
INT8_ENCODER = {"weight_type": "QInt8", "per_channel": True, "op_types_to_quantize": ["MatMul"]}
# Without int8 dot-product instructions (x86 with AVX2 only) onnxruntime multiplies u8 activations by s8 weights
# with an instruction whose 16-bit sums saturate: the tiny model's image features were 12-17 % off fp32's there
# (1.3-1.4 % with VNNI). 7-bit weights (`reduce_range`, what onnxruntime's quantization guide advises for such CPUs)
# brought them to 1.8-1.9 % at the same speed; u8 weights to 1.4 %, but 1.3x slower (one CLIP-sized MatMul, 2 cores).
_NO_SATURATION = ("AMX", "AVX-512 VNNI", "AVX-VNNI", "Arm dot product")


def int8_encoder_options() -> dict:
    """`quantize_dynamic`'s options for this CPU's image encoder (INT8_ENCODER, 7-bit weights where needed). Lab 02."""
    import platform

    arm = platform.machine().lower() in ("arm64", "aarch64")
    return {**INT8_ENCODER, "reduce_range": not (arm or sizing.int8_instructions() in _NO_SATURATION)}


def default_encoder(execution_provider: str) -> str:
    """The image encoder an export gets unless told: int8 on the CPU, fp32 elsewhere. Lab 02."""
    return "int8" if execution_provider == "cpu" else "fp32"


def check_encoder(encoder: str | None, execution_provider: str) -> str:
    """`encoder`, or the default for the execution provider; a clear error for one that cannot run there. Lab 02."""
    encoder = encoder or default_encoder(execution_provider)
    if encoder not in ENCODERS:
        raise VisionError(f"encoder={encoder!r}: choose int8 (the CPU default: quantized, about 3x faster) or fp32.")
    if encoder == "int8" and execution_provider != "cpu":
        raise VisionError(f"encoder='int8' runs on the CPU only (onnxruntime's dynamic quantization); on "
                          f"{execution_provider} use encoder='fp32'.")
    return encoder


def export(model: str | Path = "tiny-vision", precision: str = "fp32", execution_provider: str = "cpu",
           force: bool = False, progress: bool = True, check_memory: bool = True,
           in_child: bool | None = None, encoder: str | None = None, quantized: dict | None = None) -> Path:
    """Export a Phi-3.5-vision checkpoint to an onnxruntime-genai multimodal folder (cached, atomic). Lab 02.

    `precision` is the text decoder's; `encoder` the image encoder's (`ENCODERS`; default int8 on the CPU, fp32
    elsewhere): the int8 folder is the fp32 one with a quantized `vision.onnx` (its other files linked).
    An export that needs more RAM than is available (`labkit.sizing`, measured on a shadow) is
    refused before it starts; `check_memory=False` starts it anyway. `in_child` (default: for real-size
    checkpoints) runs the export in a separate Python process, its output in the step's log. `quantized`: an
    INT4 decoder's build options (a profile's, e.g. the laptop's blocks of 128); its `extra` joins
    `DECODER_OPTIONS`."""
    int4 = dict(quantized or {}) if precision == "int4" else {}
    build.BuildOptions(precision, execution_provider, **int4).validate()   # bad precision x EP fails first
    encoder = check_encoder(encoder, execution_provider)
    model_dir = resolve(model)

    def make(tmp: Path, log: Path) -> dict:
        config = checked_config(model_dir)[0]
        if check_memory:                       # inside the step: a cache hit needs no check
            need = sizing.vision_export_requirement(config)
            try:
                sizing.check_fits(f"The {precision} export of {model_dir.name}", need["peak_rss_bytes"],
                                  need["basis"])
            except sizing.DoesNotFit as err:
                raise VisionError(f"{err} (export(..., check_memory=False))") from None
        child = in_child if in_child is not None else \
            sizing.parameters_of(sizing.text_config(config)) >= CHILD_PROCESS_PARAMETERS
        if child:
            return _export_in_child(tmp, model_dir, precision, execution_provider, force, log, int4)
        return _export_into(tmp, model_dir, precision, execution_provider, force, progress, int4)

    name = build.BuildOptions(precision, **{k: v for k, v in int4.items() if k != "extra"}).name if int4 else precision
    key = (model_dir, precision, execution_provider, EXPORT_FORMAT, ENCODER_GRAPH, DECODER_OPTIONS,
           *([int4] if int4 else []))
    fp32 = cache.cached_step("vision", f"{model_dir.name}-{name}", key, make,
                             info_file="export_info.json", label=f"{precision} vision export", force=force).path
    return fp32 if encoder == "fp32" else _with_int8_encoder(fp32, force)


def _with_int8_encoder(source: Path, force: bool) -> Path:
    """`source`'s export with its image encoder quantized to int8 (cached; the other files hard-linked). Lab 02."""
    import os

    def make(tmp: Path, log: Path) -> dict:
        for f in source.iterdir():
            if f.is_file() and f.name not in (VISION_FILE, "manifest.json", "export_info.json"):
                try:
                    os.link(f, tmp / f.name)           # the same bytes: no second copy of the decoder on disk
                except OSError:
                    shutil.copy2(f, tmp / f.name)
        quantize_encoder(source / VISION_FILE, tmp / VISION_FILE, options)
        log.write_text(f"onnxruntime.quantization.quantize_dynamic({source / VISION_FILE}, {options}); the other "
                       f"files linked from {source}\n", encoding="utf-8")
        made = json.loads((source / "export_info.json").read_text(encoding="utf-8"))
        return {**{k: v for k, v in made.items() if k != "seconds"}, "encoder": "int8",
                "encoder_quantization": options, "fp32_encoder_export": str(source)}

    options = int8_encoder_options()
    return cache.cached_step("vision", f"{source.name}-encoder-int8", (source, options, EXPORT_FORMAT), make,
                             info_file="export_info.json", label="int8 image encoder", force=force).path


def quantize_encoder(source: Path, target: Path, options: dict | None = None) -> None:
    """`source` (an ONNX image encoder) with int8 MatMul weights, written to `target` (default: this CPU's). Lab 02."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)          # a line per tensor at INFO, and advice at WARNING
    try:
        options = options or int8_encoder_options()
        quantize_dynamic(str(source), str(target), weight_type=getattr(QuantType, options["weight_type"]),
                         **{k: v for k, v in options.items() if k != "weight_type"})
    finally:
        root.setLevel(level)


def _export_in_child(tmp: Path, model_dir: Path, precision: str, execution_provider: str, force: bool,
                     log: Path, int4: dict) -> dict:
    """`_export_into` in a fresh Python process (`python -m labkit.making.vision_export`), its output in `log`."""
    import subprocess
    import sys

    print(f"exporting {model_dir.name} ({precision}) in a separate process; its log: {paths.shown(log)}", flush=True)
    with log.open("a", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "labkit.making.vision_export", str(tmp), str(model_dir),
                               precision, execution_provider, "1" if force else "0", json.dumps(int4)],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=children.python_env())
    if done.returncode != 0:
        killed = " (killed: out of memory?)" if done.returncode in (-9, 137) else ""
        raise VisionError(f"The {precision} export of {model_dir.name} failed in its process (exit "
                          f"{done.returncode}{killed}). Its log: {log}")
    result = tmp / "export_result.json"
    info = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return info


def _export_into(tmp: Path, model_dir: Path, precision: str, execution_provider: str, force: bool,
                 progress: bool, int4: dict | None = None) -> dict:
    """The three ONNX models, genai_config.json and processor_config.json of one export, written into `tmp`."""
    import torch

    config, encoder, embed_weight = read_vision_part(model_dir)
    started = time.perf_counter()
    # Inside tmp: concurrent exports (another precision, another attendee) never share it.
    text_dir = text_checkpoint(config, model_dir, tmp / f"{model_dir.name}-text")
    int4 = dict(int4 or {})
    decoder = build.build(text_dir, precision, execution_provider, force=force, progress=progress,
                          **{**int4, "extra": {**DECODER_OPTIONS, **int4.get("extra", {})}})
    for f in decoder.path.iterdir():
        if f.name != "build_info.json":
            shutil.copy2(f, tmp / f.name)
    pixel_values, image_sizes = _sample_inputs()
    _export_onnx(encoder, (pixel_values, image_sizes), tmp / VISION_FILE, ["pixel_values", "image_sizes"],
                 ["image_features"], {"pixel_values": {0: "num_images"}, "image_sizes": {0: "num_images"},
                                      "image_features": {0: "num_image_tokens"}})
    embed = torch.nn.Embedding.from_pretrained(embed_weight.float())
    del embed_weight
    ids = torch.tensor([[5, -1, -1, 7]])
    _export_onnx(embedding_model(embed), (ids, torch.randn(2, embed.embedding_dim)), tmp / EMBEDDING_FILE,
                 ["input_ids", "image_features"], ["inputs_embeds"],
                 {"input_ids": {0: "batch", 1: "sequence"}, "image_features": {0: "num_image_tokens"},
                  "inputs_embeds": {0: "batch", 1: "sequence"}})
    genai = json.loads((tmp / "genai_config.json").read_text(encoding="utf-8"))
    genai["model"]["type"] = "phi3v"
    # Vision and embedding run on the decoder's execution provider (CUDA in the gpu profile).
    session = genai["model"]["decoder"].get("session_options", {})
    genai["model"]["embedding"] = {"filename": EMBEDDING_FILE, "session_options": session,
                                   "inputs": {"input_ids": "input_ids", "image_features": "image_features"},
                                   "outputs": {"inputs_embeds": "inputs_embeds"}}
    genai["model"]["vision"] = {"filename": VISION_FILE, "session_options": session,
                                "inputs": {"pixel_values": "pixel_values", "image_sizes": "image_sizes"},
                                "outputs": {"image_features": "image_features"}}
    (tmp / "genai_config.json").write_text(json.dumps(genai, indent=4), encoding="utf-8")
    (tmp / "processor_config.json").write_text(json.dumps(_PROCESSOR_CONFIG, indent=2), encoding="utf-8")
    shutil.rmtree(text_dir, ignore_errors=True)
    return {"source": str(model_dir), "precision": precision, "execution_provider": execution_provider,
            "seconds": round(time.perf_counter() - started, 1), "format": EXPORT_FORMAT}


_PROCESSOR_CONFIG = {"processor": {"name": "image_processing", "transforms": [
    {"operation": {"name": "decode_image", "type": "DecodeImage", "attrs": {"color_space": "RGB"}}},
    {"operation": {"name": "convert_to_rgb", "type": "ConvertRGB"}},
    {"operation": {"name": "phi3_image_transform", "type": "Phi3ImageTransform",
                   "attrs": {"num_crops": 16, "num_img_tokens": TOKENS_PER_CROP}}}]}}


def plot_pipeline():
    """The multimodal pipeline as a figure: processor -> vision -> embedding -> decoder. Lab 02."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    steps = [("image + prompt", "#dddddd"), ("processor\n(C++: HD transform,\n16 crops + 1 global)", "#c6dbef"),
             ("vision.onnx\nCLIP + 2x2 merge +\nseparators + MLP", "#9ecae1"),
             ("embedding.onnx\ntext ids + image\nfeatures -> embeds", "#6baed6"),
             ("text.onnx\nPhi-3 decoder\n(model builder)", "#4292c6"), ("answer", "#dddddd")]
    fig, ax = plt.subplots(figsize=(12, 2.4))
    for i, (label, colour) in enumerate(steps):
        ax.add_patch(FancyBboxPatch((i * 2, 0), 1.6, 1, boxstyle="round,pad=0.05", color=colour))
        ax.text(i * 2 + 0.8, 0.5, label, ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", (i * 2 - 0.05, 0.5), (i * 2 - 0.35, 0.5), arrowprops={"arrowstyle": "->"})
    ax.text(5, -0.35, "pixel_values [images,17,3,336,336] -> image_features [~1.6k-2.6k tokens per image, hidden]",
            ha="center", fontsize=8)
    ax.set_xlim(-0.2, 12)
    ax.set_ylim(-0.6, 1.2)
    ax.axis("off")
    return fig


def latest_export(profile=None) -> Path:
    """Lab 02's export recorded in this run (or `runs/latest`), else one made now (cached). Lab 04."""
    from ..core import results
    from ..core.profiles import get_profile

    prof = get_profile(profile)
    recorded = results.find("02_vision_export", "exports", profile=prof.name) or {}
    for folder in recorded.values():
        if Path(folder).exists():
            return Path(folder)
    return export(prof.vision_model, "int4", prof.execution_provider)


if __name__ == "__main__":      # the child process of `_export_in_child`: TMP MODEL_DIR PRECISION EP FORCE INT4
    import sys

    out, source, chosen, provider, again, options = sys.argv[1:7]
    info = _export_into(Path(out), Path(source), chosen, provider, again == "1", progress=False,
                        int4=json.loads(options))
    (Path(out) / "export_result.json").write_text(json.dumps(info), encoding="utf-8")
