"""Shadow models: Phi-3.5-mini's exact architecture with random weights, for real size, memory and speed.

The course cannot download Microsoft's weights here, but how big a build is, how much memory the
builder needs and how fast a model decodes do not depend on the weights' values. A shadow is a
normal Hugging Face checkpoint folder laid out like the published one (`config.json`, bf16
safetensors shards, `model.safetensors.index.json`, tokenizer files) that every tool reads as
it reads `microsoft/Phi-3.5-mini-instruct`:

    from labkit import shadow
    path = shadow.create_shadow("phi-3.5-mini")            # 3.82B parameters, 7.6 GB of bf16
    path = shadow.create_shadow("phi-3.5-mini", layers=4)  # same width, 4 decoder layers (0.65B)

Creation never holds the model in memory: tensor shapes come from a `Phi3ForCausalLM` on the
meta device, and each shard (≤ 2 GB) is filled, written and freed in turn. Weights are
deterministic (one seeded generator per tensor name), so a shadow is the same on every machine,
and it is cached like every labkit output (verified manifest, atomic, lock per folder).

Tokenizer: Phi-3.5's own (`labkit.models.add_phi3_tokenizer`), so every real-size build, the builder's
re-save of the tokenizer and llama.cpp's converter go through the files a published folder has.
Taught in lab 01 (real size) and measured by `make bench-scale`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ..core import cache
from ..core.errors import LabkitError
from . import models

_SHADOW_FORMAT = "labkit-shadow-v2"   # bump when what create_shadow writes changes
SHARD_BYTES = 2 << 30                # ≤ 2 GiB per shard bounds creation memory

# microsoft/Phi-3.5-mini-instruct's config.json values. The LongRoPE factor lists (48 = head_dim / 2
# values each) are Phi-3-mini-128k's published ones; Phi-3.5-mini's differ slightly, and neither
# changes size, memory or speed.
_LONG_FACTOR = [
    1.08, 1.11, 1.14, 1.34, 1.59, 1.6, 1.62, 2.62, 3.23, 3.23, 4.79, 7.4, 7.7, 9.09, 12.2, 17.67, 24.46, 28.57,
    30.42, 30.84, 32.59, 32.93, 42.32, 44.96, 50.34, 50.45, 57.55, 57.93, 58.21, 60.14, 62.61, 62.62, 62.71, 63.14,
    63.14, 63.77, 63.93, 63.96, 63.97, 64.03, 64.07, 64.08, 64.12, 64.41, 64.48, 64.51, 64.53, 64.84]
_SHORT_FACTOR = [
    1.0, 1.02, 1.03, 1.03, 1.05, 1.05, 1.05, 1.05, 1.05, 1.07, 1.1, 1.11, 1.16, 1.16, 1.17, 1.29, 1.34, 1.68, 1.79,
    1.82, 1.85, 1.88, 1.91, 1.94, 1.99, 2.02, 2.02, 2.02, 2.02, 2.02, 2.02, 2.03, 2.03, 2.03, 2.03, 2.03, 2.03, 2.03,
    2.03, 2.03, 2.08, 2.09, 2.19, 2.22, 2.59, 2.73, 2.75, 2.84]

ARCHITECTURES = {
    "phi-3.5-mini": {
        "hub_id": models.HUB_IDS["mini"],
        "tokenizer": "phi-3.5",
        "config": {
            "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
            "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
            "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": False,
            "initializer_range": 0.02, "attention_dropout": 0.0, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "rope_scaling": {"type": "longrope", "rope_type": "longrope", "long_factor": _LONG_FACTOR,
                             "short_factor": _SHORT_FACTOR},
            "torch_dtype": "bfloat16",
        },
        "parameters": 3_821_079_552,   # published: 3.8B
    },
}
# microsoft/Phi-4-mini-instruct's config.json: still `Phi3ForCausalLM`, but 24 query heads sharing 8 KV heads
# (grouped-query attention), rotary embeddings on 0.75 of each 128-wide head (96 dims: LongRoPE lists of 48), an
# o200k vocabulary padded to 200,064 rows, and the LM head tied to the embedding (no lm_head.weight is stored).
# Its LongRoPE factor lists are stand-ins of the right length (Phi-3.5's first 48): they change no size or speed.
ARCHITECTURES["phi-4-mini"] = {
    "hub_id": models.HUB_IDS["phi4-mini"],
    "tokenizer": "phi-4-mini",
    "config": {
        **ARCHITECTURES["phi-3.5-mini"]["config"],
        "num_attention_heads": 24, "num_key_value_heads": 8, "partial_rotary_factor": 0.75, "vocab_size": 200064,
        "tie_word_embeddings": True,
        # Published configs name the transformers that wrote them; without one, transformers 5.17 takes any local
        # folder for a Mistral checkpoint and warns that this tokenizer's (correct) split pattern is wrong.
        "transformers_version": "4.45.0",
    },
    "parameters": 3_836_021_760,   # published: 3.8B; quoted in public code as 3,836,021,760
}
# microsoft/Phi-3.5-vision-instruct: the same decoder plus a CLIP ViT-L/14-336 tower (24 layers, hidden 1024),
# the HD transform's learnable separators and a 2-layer projection to 3072 (labkit.vision_encoder has the layout).
ARCHITECTURES["phi-3.5-vision"] = {
    "hub_id": models.HUB_IDS["vision"],
    "tokenizer": "phi-3.5",
    "config": {**ARCHITECTURES["phi-3.5-mini"]["config"], "architectures": ["Phi3VForCausalLM"],
               "model_type": "phi3_v"},
    "parameters": 4_146_621_440,   # published: 4.2B
}
_VISION_LAYERS = 24


class ShadowError(LabkitError, ValueError):
    """A shadow that cannot be made as asked; the message names the fix. Lab 01."""


# A narrow shadow: 64-wide heads. CPU GroupQueryAttention needs head_dim a multiple of 16 and, with partial
# rotary, rotary_dim / 2 a multiple of 8 (0.75 x 64 = 48 rotary dims: 24 cos/sin columns).
NARROW_WIDTH, NARROW_HEAD = 192, 64


def shadow_config(name: str = "phi-3.5-mini", layers: int | None = None, vision_layers: int | None = None,
                  narrow: bool = False) -> dict:
    """The config.json of a shadow: the published architecture, `layers` decoder layers deep. Lab 01.

    For `phi-3.5-vision`, `vision_layers` shortens the CLIP tower the same way (24 = published).
    `narrow=True` keeps everything but the width — the vocabulary, the query-to-KV head ratio, the rotary
    fraction, tied embeddings, the tokenizer — at 192 wide: the test suite's model of a family."""
    if name not in ARCHITECTURES:
        raise ShadowError(f"Unknown shadow {name!r}. Choose one of: {', '.join(ARCHITECTURES)}.")
    config = json.loads(json.dumps(ARCHITECTURES[name]["config"]))
    if narrow:
        if "vision" in name:
            raise ShadowError("narrow=True applies to the text models, not the vision model.")
        config = _narrowed(config)
    full = config["num_hidden_layers"]
    if layers is not None:
        if not isinstance(layers, int) or not 1 <= layers <= full:
            raise ShadowError(f"layers={layers!r}: a shadow of {name} has 1 to {full} decoder layers "
                              f"(None = all {full}).")
        config["num_hidden_layers"] = layers
    if config["architectures"] == ["Phi3VForCausalLM"]:
        from . import vision_encoder as vision

        depth = _VISION_LAYERS if vision_layers is None else vision_layers
        if not isinstance(depth, int) or not 1 <= depth <= _VISION_LAYERS:
            raise ShadowError(f"vision_layers={vision_layers!r}: the CLIP tower has 1 to {_VISION_LAYERS} layers.")
        block = vision.vision_config_block(_vision_spec(depth))
        if depth == _VISION_LAYERS:
            del block["img_processor"]["labkit_spec"]     # exactly the published config: labkit reads it as REAL
        config.update(block)
    elif vision_layers is not None:
        raise ShadowError(f"vision_layers applies to phi-3.5-vision, not {name}.")
    return config


def _narrowed(config: dict) -> dict:
    heads = NARROW_WIDTH // NARROW_HEAD
    group = config["num_attention_heads"] // config["num_key_value_heads"]
    rotary_half = int(NARROW_HEAD * config.get("partial_rotary_factor", 1.0)) // 2
    rope = dict(config["rope_scaling"], long_factor=config["rope_scaling"]["long_factor"][:rotary_half],
                short_factor=config["rope_scaling"]["short_factor"][:rotary_half])
    return {**config, "hidden_size": NARROW_WIDTH, "intermediate_size": 512, "num_attention_heads": heads,
            "num_key_value_heads": heads // group, "rope_scaling": rope}


def _vision_spec(depth: int):
    from dataclasses import replace

    from . import vision_encoder as vision

    return replace(vision.REAL, num_layers=depth)


def _text_only(config: dict) -> dict:
    skip = ("torch_dtype", "img_processor", "embd_layer", "architectures", "model_type")
    return {k: v for k, v in config.items() if k not in skip}


def parameter_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from `Phi3ForCausalLM` on the meta device (no memory used). Lab 01."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()     # transformers 5 warns about the published LongRoPE config's own fields
    try:
        config_object = Phi3Config(**_text_only(config))
    finally:
        hf_logging.set_verbosity(verbosity)
    with torch.device("meta"):
        model = Phi3ForCausalLM(config_object)
        shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        if config.get("tie_word_embeddings"):
            del shapes["lm_head.weight"]    # the embedding, shared: a tied checkpoint does not store it
        if "img_processor" in config:
            from . import vision_encoder as vision

            spec = vision.VisionSpec(**config["img_processor"].get("labkit_spec", asdict(vision.REAL)))
            encoder = vision.vision_encoder(spec, config["hidden_size"])
            shapes.update({name: tuple(t.shape) for name, t in vision.checkpoint_names(encoder.state_dict()).items()})
    return shapes


def count_parameters(config: dict) -> int:
    """Number of parameters of a shadow with this config. Lab 01."""
    import math

    return sum(math.prod(shape) for shape in parameter_shapes(config).values())


def random_tensor(name: str, shape: tuple[int, ...], seed: int = 0):
    """A deterministic bf16 tensor: ones for norms, N(0, 0.02) elsewhere (the checkpoint's init). Lab 01."""
    import hashlib

    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    tensor_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1
    gen = torch.Generator().manual_seed(tensor_seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)


def plan_shards(shapes: dict[str, tuple[int, ...]], limit: int = SHARD_BYTES) -> list[list[str]]:
    """Group tensors, in order, into shards of at most `limit` bytes of bf16. Lab 01."""
    import math

    shards, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = 2 * math.prod(shape)
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _write_checkpoint(config: dict, out_dir: Path, seed: int = 0, progress: bool = True) -> int:
    """Write random bf16 safetensors shards and their index for `config`, one shard in memory at a time. Lab 01."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    shapes = parameter_shapes(config)
    shards = plan_shards(shapes)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map, total = {}, 0
    with tqdm(total=len(shapes), desc="writing shadow weights", disable=not progress, unit="tensor") as bar:
        for shard, filename in zip(shards, names, strict=True):
            tensors = {}
            for name in shard:
                tensors[name] = random_tensor(name, shapes[name], seed)
                weight_map[name] = filename
                total += tensors[name].numel()
                bar.update()
            save_file(tensors, str(out_dir / filename), metadata={"format": "pt"})
            del tensors
    index = {"metadata": {"total_size": 2 * total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return total


def _token_ids(tokenizer: str) -> dict:
    """The published config's and generation_config's token ids, and the tokenizer files, of a family."""
    if tokenizer == "phi-4-mini":
        end, eos = models.PHI4_ENDOFTEXT_ID, models.PHI4_EOS_IDS
        return {"config": {"bos_token_id": end, "eos_token_id": end, "pad_token_id": end},
                "generation": {"bos_token_id": end, "eos_token_id": eos, "pad_token_id": end},
                "add_tokenizer": models.add_phi4_tokenizer}
    ids = {"bos_token_id": models.BOS_ID, "eos_token_id": models.EOS_IDS, "pad_token_id": models.ENDOFTEXT_ID}
    return {"config": ids, "generation": ids, "add_tokenizer": models.add_phi3_tokenizer}


def bytes_to_create(name: str = "phi-3.5-mini", layers: int | None = None, *, vision_layers: int | None = None,
                    narrow: bool = False, seed: int = 0) -> int:
    """Disk that `create_shadow` with these arguments would still write: 0 when the shadow exists. Lab 01."""
    config = shadow_config(name, layers, vision_layers, narrow)
    final = cache.output_dir("shadows", folder_name(name, layers, vision_layers=vision_layers, narrow=narrow,
                                                    seed=seed))
    return 0 if (final / "labkit_model.json").exists() else int(2.05 * count_parameters(config))


def folder_name(name: str = "phi-3.5-mini", layers: int | None = None, *, vision_layers: int | None = None,
                narrow: bool = False, seed: int = 0) -> str:
    """The shadow's folder name in the model cache, which its builds' and exports' names start with. Lab 01."""
    config = shadow_config(name, layers, vision_layers, narrow)
    key = cache.cache_key(config, seed, _SHADOW_FORMAT, models.MODEL_FORMAT)
    return f"{name}-{config['num_hidden_layers']}L{'-narrow' if narrow else ''}-{key}"


def create_shadow(name: str = "phi-3.5-mini", layers: int | None = None, *, vision_layers: int | None = None,
                  narrow: bool = False, seed: int = 0, force: bool = False, progress: bool = True) -> Path:
    """Create (or reuse) a random-weight checkpoint with `name`'s exact architecture; return its folder. Lab 01.

    `layers=N` keeps the width and stops after N decoder layers: size, build memory and decode
    time grow linearly with N, so shallow shadows measure what the full one costs.
    """
    config = shadow_config(name, layers, vision_layers, narrow)
    depth = config["num_hidden_layers"]
    final = cache.output_dir("shadows", folder_name(name, layers, vision_layers=vision_layers, narrow=narrow,
                                                    seed=seed), force=force)
    final.parent.mkdir(parents=True, exist_ok=True)
    needed = int(2.05 * count_parameters(config))
    free = shutil.disk_usage(final.parent).free
    started = time.perf_counter()
    with cache.cached_dir(final, force, f"the {name} shadow ({depth} layers)") as tmp:
        if tmp is None:
            return final
        if free < needed:
            raise ShadowError(f"Not enough disk for the {name} shadow: it needs {needed / 1e9:.1f} GB, "
                              f"{final.parent} has {free / 1e9:.1f} GB free. Free space or set LABKIT_CACHE.")
        ids = _token_ids(ARCHITECTURES[name]["tokenizer"])
        config.update(ids["config"])
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        ids["add_tokenizer"](tmp)
        (tmp / "generation_config.json").write_text(json.dumps(ids["generation"], indent=2), encoding="utf-8")
        parameters = _write_checkpoint(config, tmp, seed, progress)
        record = {"shadow_of": ARCHITECTURES[name]["hub_id"], "layers": depth, "seed": seed,
                  "parameters": parameters, "seconds": round(time.perf_counter() - started, 1)}
        (tmp / "labkit_model.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return final
