"""A PEFT LoRA adapter as an `.onnx_adapter` for a model the model builder already exported with another one. Lab 04.

`olive auto-opt` writes an adapter only as part of a whole export (the model builder bakes the LoRA into the
graph, Olive's ExtractAdapters pass lifts its weights out again): for a second adapter on the same model that is
a full rebuild — at Phi-3.5-mini's size minutes and ≈ 14 GB of memory — to keep a few megabytes. Olive's own
`convert-adapters` does not fit the builder's graph: it writes PEFT's names (`self_attn.qkv_proj.lora_A.weight`)
in float, while the builder splits the packed `qkv_proj` and `gate_up_proj` LoRAs into q/k/v and gate/up, names
them `attn.q_proj.lora_A.MatMul.weight`, scales `lora_B` by alpha / r and, in an INT4 export, quantizes them with
ONNX Runtime's MatMulNBits quantizer. This module does the same steps, with the same library calls, on the
adapter alone.

It trusts nothing it cannot check: `convert` first converts the adapter the export was made with and requires
every tensor to equal, byte for byte, the one Olive wrote. Another model builder or Olive version that does
anything differently fails that check, and lab 04 exports again instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core import cache
from ..core.errors import LabkitError
from ..runtime import adapters

_FORMAT = "labkit-adapter-convert-v1"   # bump when the same inputs convert differently
ADAPTER_FILE = "adapter_weights.onnx_adapter"    # the name Olive's export gives its adapter

# PEFT module (after `layers.N.`) -> the builder's LoRA MatMuls it becomes, in the order its lora_B rows split
_SPLITS = {"self_attn.qkv_proj": ("attn.q_proj", "attn.k_proj", "attn.v_proj"),
           "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}
_PEFT_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


class AdapterMismatch(LabkitError, ValueError):
    """The conversion does not reproduce what the export wrote; the caller exports instead. Lab 04."""


def for_export(onnx_dir: Path, peft_dir: str | Path, force: bool = False) -> Path:
    """A PEFT adapter (`olive finetune`'s output) as an `.onnx_adapter` for the model Olive exported in `onnx_dir`
    with another adapter: a cached step of a second instead of a whole export. Lab 04.

    Raises AdapterMismatch when the conversion does not reproduce that export's own adapter."""
    onnx_dir, peft_dir = Path(onnx_dir), Path(peft_dir)
    source = json.loads((onnx_dir / "labkit_export.json").read_text(encoding="utf-8"))
    reference = onnx_dir / ADAPTER_FILE

    def make(tmp: Path, log: Path) -> dict:
        parameters = convert(peft_dir, cache.relocated(source["adapter"]), reference)
        write(parameters, tmp / ADAPTER_FILE, adapters.base_fingerprint(onnx_dir))
        return {"adapter": str(peft_dir.resolve()), "model_dir": str(onnx_dir.resolve()),
                "base_model": source["base_model"], "converted_like": str(reference.resolve())}

    step = cache.cached_step("olive", f"{onnx_dir.name}-adapter", (cache.file_sha256(reference), peft_dir, _FORMAT),
                             make, info_file="labkit_adapter.json", label="adapter conversion", force=force)
    return step.path / ADAPTER_FILE


def how_made(adapter: Path) -> str:
    """Whether an `.onnx_adapter` was converted here or kept from a whole Olive export, in a few words. Lab 04."""
    if (Path(adapter).parent / "labkit_adapter.json").exists():
        return "converted for the model's graph (no export)"
    return "kept from a whole second export"


def convert(peft_dir: Path, reference_peft_dir: Path, reference_adapter: Path) -> dict:
    """`peft_dir`'s LoRA as the export of `reference_peft_dir` (which wrote `reference_adapter`) would write it. Lab 04.

    Returns {parameter name: numpy array}; raises AdapterMismatch unless converting `reference_peft_dir` gives
    `reference_adapter`'s tensors exactly, or when `peft_dir` has other shapes than the reference."""
    reference = adapters.read_adapter(reference_adapter)     # its OrtValues point into it: copy while it lives
    wanted = {name: value.numpy().copy() for name, value in reference.get_parameters().items()}
    layout = _layout(wanted)
    again = _convert(Path(reference_peft_dir), layout)
    if again.keys() != wanted.keys():
        missing, extra = sorted(wanted.keys() - again.keys()), sorted(again.keys() - wanted.keys())
        raise AdapterMismatch(f"the export's adapter has {len(wanted)} tensors, the conversion {len(again)} "
                              f"(missing {missing[:2]}, extra {extra[:2]})")
    for name, value in wanted.items():
        if again[name].dtype != value.dtype or again[name].shape != value.shape or \
                again[name].tobytes() != value.tobytes():
            raise AdapterMismatch(f"{name} differs from the export's")
    converted = _convert(Path(peft_dir), layout)
    for name, value in wanted.items():
        if name not in converted or converted[name].shape != value.shape:
            raise AdapterMismatch(f"{peft_dir} has another LoRA layout than the export's adapter ({name}): "
                                  "train it with the same rank and target modules")
    return converted


def write(parameters: dict, path: Path, model_version: int, adapter_version: int = 1) -> None:
    """Write `parameters` as an `.onnx_adapter` with ONNX Runtime's AdapterFormat, atomically. Lab 04."""
    import onnxruntime

    adapter = onnxruntime.AdapterFormat()
    adapter.set_adapter_version(adapter_version)
    adapter.set_model_version(model_version)
    adapter.set_parameters({name: onnxruntime.OrtValue.ortvalue_from_numpy(value)
                            for name, value in parameters.items()})
    tmp = path.with_name(path.name + ".tmp")
    adapter.export_adapter(str(tmp))
    tmp.replace(path)


def _layout(wanted: dict) -> dict:
    """How the export stored each LoRA MatMul: its output width, and INT4 (block size) or float. Lab 04."""
    layout = {}
    for name, value in wanted.items():
        if name.endswith(".MatMul.weight_Q4"):
            base = name.removesuffix("_Q4")
            if base + "_scales" not in wanted or base + "_zero_points" in wanted:
                raise AdapterMismatch(f"{name}: only symmetric INT4 without zero points is converted")
            layout[base] = {"width": value.shape[0], "block": value.shape[2] * 2, "scales": wanted[base + "_scales"]}
        elif name.endswith(".MatMul.weight"):
            layout[name] = {"width": value.shape[1], "block": None}
        elif not name.endswith(".MatMul.weight_scales"):
            raise AdapterMismatch(f"{name}: not a tensor the model builder writes for a LoRA MatMul")
    return layout


def _convert(peft_dir: Path, layout: dict) -> dict:
    import torch
    from safetensors.torch import load_file

    config = json.loads((peft_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
        raise AdapterMismatch("only plain LoRA adapters are converted (not DoRA or rsLoRA)")
    scaling = config["lora_alpha"] / config["r"]
    out = {}
    for peft_name, weight in load_file(str(peft_dir / "adapter_model.safetensors")).items():
        match = _PEFT_NAME.match(peft_name)
        if not match:
            raise AdapterMismatch(f"{peft_name}: not a LoRA weight of a decoder layer")
        layer, block, module, side = match.groups()
        targets = _SPLITS.get(f"{block}.{module}", (f"{'attn' if block == 'self_attn' else block}.{module}",))
        weight = weight.to(torch.float32)
        if side == "B":
            weight = weight * scaling          # the builder folds the scaling into lora_B
        names = [f"model.layers.{layer}.{target}.lora_{side}.MatMul.weight" for target in targets]
        if any(name not in layout for name in names):
            raise AdapterMismatch(f"{peft_name}: the export has no {names[0]}")
        if side == "B":
            widths = [layout[name]["width"] for name in names]
            if sum(widths) != weight.shape[0]:
                raise AdapterMismatch(f"{peft_name}: {weight.shape[0]} rows, the export's split {widths}")
            parts = torch.split(weight, widths, dim=0)
        else:                                  # one lora_A feeds the q, k and v (gate and up) MatMuls
            parts = [weight] * len(names)
        for name, part in zip(names, parts):
            out.update(_matmul_weight(name, part.T.contiguous().numpy(), layout[name]))
    return out


def _matmul_weight(name: str, weight, layout: dict) -> dict:
    """A [K, N] MatMul weight as the export stores it: float, or MatMulNBits' packed INT4 blocks and scales."""
    import numpy as np
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    if layout["block"] is None:
        return {name: weight}
    block = layout["block"]
    rows, cols = weight.shape
    blocks = -(-rows // block)
    weight = np.pad(weight, ((0, blocks * block - rows), (0, 0)))   # MatMulNBitsQuantizer pads K to whole blocks
    packed = np.zeros((cols, blocks, block // 2), dtype="uint8")
    scales = np.zeros((cols, blocks), dtype=weight.dtype)
    zero_points = np.zeros((cols, -(-blocks // 2)), dtype="uint8")
    quantize_matmul_4bits(packed, weight, scales, zero_points, block, cols, rows, True)
    return {name + "_Q4": packed, name + "_scales": scales.astype(layout["scales"].dtype)}
