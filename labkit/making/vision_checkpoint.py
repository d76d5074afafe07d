"""Phi-3.5-vision checkpoints: the tiny one made here, reading a real or shadow one, its text half. Lab 02."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from ..core import cache
from ..core.errors import InputError
from . import models
from .vision_encoder import (
    PREFIX,
    REAL,
    TINY,
    VisionSpec,
    checkpoint_names,
    load_vision_state,
    vision_config_block,
    vision_encoder,
)

EXPORT_FORMAT = "labkit-vision-v2"


def create_tiny_vision(force: bool = False) -> Path:
    """A Phi-3.5-vision-shaped checkpoint: the tiny Phi-3 + a tiny CLIP encoder (random), real key names. Lab 02."""
    import torch
    from safetensors.torch import load_file, save_file

    text_dir = models.create_tiny("tiny")
    key = cache.cache_key(text_dir, asdict(TINY), EXPORT_FORMAT)
    final = cache.output_dir(f"tiny-vision-{key}", force=force)
    with cache.cached_dir(final, force, "the tiny-vision model") as tmp:
        if tmp is None:
            return final
        config = json.loads((text_dir / "config.json").read_text(encoding="utf-8"))
        torch.manual_seed(0)
        encoder = vision_encoder(TINY, config["hidden_size"])
        with torch.no_grad():   # non-zero separators, so the layout is visible in the features
            encoder.glb_GN.normal_(std=0.5)
            encoder.sub_GN.normal_(std=0.5)
        state = load_file(str(text_dir / "model.safetensors"))
        state.update({k: v.contiguous() for k, v in checkpoint_names(encoder.state_dict()).items()})
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.update(architectures=["Phi3VForCausalLM"], **vision_config_block(TINY))
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        models.copy_tokenizer(text_dir, tmp)
        shutil.copy2(text_dir / "generation_config.json", tmp / "generation_config.json")
    return final


def resolve(model: str | Path) -> Path:
    """`tiny-vision`, a local Phi-3.5-vision folder, or a hub id -> a checkpoint folder. Lab 02."""
    return create_tiny_vision() if str(model) in ("tiny-vision", "tiny") else models.resolve_model(model)


def checked_config(model_dir: Path) -> tuple[dict, VisionSpec]:
    """A Phi-3.5-vision checkpoint's config.json and its CLIP tower's shape, or a clear error. Lab 02."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    if (config.get("architectures") or [""])[0] != "Phi3VForCausalLM":
        raise InputError(f"{model_dir} is not a Phi-3.5-vision checkpoint (architectures "
                         f"{config.get('architectures')}); use model='tiny-vision' or "
                         "microsoft/Phi-3.5-vision-instruct.")
    spec = VisionSpec(**config["img_processor"]["labkit_spec"]) if "labkit_spec" in config.get(
        "img_processor", {}) else REAL
    return config, spec


def read_checkpoint(model_dir: Path):
    """(text config dict, text state dict, vision encoder) from a Phi-3.5-vision checkpoint folder. Lab 02."""
    from safetensors.torch import load_file

    config, spec = checked_config(model_dir)
    state = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    encoder = vision_encoder(spec, config["hidden_size"])
    load_vision_state(encoder, state)
    text_state = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    return config, text_state, encoder.eval()


def read_vision_part(model_dir: Path):
    """(config, vision encoder, token-embedding weight) of a Phi-3.5-vision checkpoint, text weights left on disk.

    The export needs only these in memory: holding the 7.6 GB of text weights while the decoder
    builds would double the export's peak RAM. Lab 02."""
    from safetensors import safe_open

    config, spec = checked_config(model_dir)
    state, embed = {}, None
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                if key.startswith(PREFIX):
                    state[key] = f.get_tensor(key)
                elif key == "model.embed_tokens.weight":
                    embed = f.get_tensor(key)
    encoder = vision_encoder(spec, config["hidden_size"])
    load_vision_state(encoder, state)
    return config, encoder.eval(), embed


def text_checkpoint(config: dict, model_dir: Path, out: Path) -> Path:
    """A text-only Phi-3 folder the model builder reads as Phi3VForCausalLM (LongRoPE, exclude_embeds), its
    weights copied one shard at a time from `model_dir` (bounded memory at any size). Lab 02."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    text = {**text_config(config), "architectures": ["Phi3VForCausalLM"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(text, indent=2), encoding="utf-8")
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    weight_map, total = {}, 0
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            tensors = {k: f.get_tensor(k).contiguous() for k in f.keys() if not k.startswith(PREFIX)}
        save_file(tensors, str(out / shard.name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard.name))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors
    if [shard.name for shard in shards] != ["model.safetensors"]:   # sharded names need their index
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2), encoding="utf-8")
    models.copy_tokenizer(model_dir, out)
    return out


def text_config(config: dict) -> dict:
    """Phi-3.5-vision's config.json reduced to the Phi-3 text model transformers 5 knows. Lab 02."""
    text = {k: v for k, v in config.items() if k not in ("img_processor", "embd_layer", "auto_map")}
    text["model_type"] = "phi3"
    rope = text.get("rope_scaling") or {}
    if rope.get("type") == "su":   # transformers 5 rejects Phi-3.5-vision's "su"; it is LongRoPE
        text["rope_scaling"] = {**rope, "type": "longrope", "rope_type": "longrope"}
    return text
