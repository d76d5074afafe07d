"""Phi-3.5-vision as an onnxruntime-genai multimodal model, with our own code only. Lab 02.

The pipeline genai runs for every image prompt:

    processor (C++: decode, HD transform into 16 crops + 1 global, 336x336 each)
      -> vision.onnx     pixel_values [images, 17, 3, 336, 336], image_sizes [images, 2]
                         -> image_features [image tokens, hidden]
      -> embedding.onnx  input_ids (image positions are negative) + image_features -> inputs_embeds
      -> text.onnx       the Phi-3 decoder (model builder, `exclude_embeds=true`)

The vision encoder is written here on top of transformers' `CLIPVisionModel`, with the parameter
names of `microsoft/Phi-3.5-vision-instruct` (`model.vision_embed_tokens.*`), so the real weights
load without `trust_remote_code` or modeling code from a hub repository:
CLIP ViT-L/14-336, second-to-last layer, class token dropped; 2x2 neighbouring patches merged
(24x24 -> 12x12 = 144 tokens of 4 x 1024 per crop); the sub-crops laid out as one big grid with a
learned `sub_GN` token closing each row, then `glb_GN`, then the global crop (also with row ends);
a 2-layer MLP projects to the decoder's width. An image padded to h x w crops of 336 costs

    (h*w + 1) * 144 + 1 + (h + 1) * 12 tokens      (e.g. padded to 1008 x 1344, h=3, w=4: 1921 tokens)

The layout is computed with tensor index arithmetic (no Python loop over images), so one ONNX
graph serves any number of images of any size.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cache, models, paths, sizing

CROP = 336            # pixels per crop side
CROPS = 17            # 16 sub-crops (the C++ transform always pads to 16) + 1 global
GRID = 12             # 24x24 CLIP patches merged 2x2 -> 12x12 tokens per crop
TOKENS_PER_CROP = GRID * GRID
PREFIX = "model.vision_embed_tokens."
VISION_FILE, EMBEDDING_FILE, TEXT_FILE = ("phi-3.5-v-instruct-vision.onnx", "phi-3.5-v-instruct-embedding.onnx",
                                          "phi-3.5-v-instruct-text.onnx")
EXPORT_FORMAT = "labkit-vision-v2"


@dataclass(frozen=True)
class VisionSpec:
    """The CLIP tower's shape. `TINY` for the CPU profile; `REAL` is Phi-3.5-vision's. Lab 02."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128


TINY = VisionSpec()
REAL = VisionSpec(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)


def image_tokens(height: int, width: int) -> int:
    """Image tokens for an image padded to `height` x `width` pixels (multiples of 336). Lab 02."""
    h, w = height // CROP, width // CROP
    return (h * w + 1) * TOKENS_PER_CROP + 1 + (h + 1) * GRID


def clip_config(spec: VisionSpec):
    """CLIP ViT-x/14 at 336 px with `spec`'s width and depth (quick_gelu, as CLIP ViT-L/14-336). Lab 02."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                            image_size=CROP, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                            projection_dim=768, attn_implementation="eager")


def hd_token_indices(image_sizes):
    """For every image token, the row of the feature table it takes (tensor ops only, exportable). Lab 02.

    The table starts with the `sub_GN` row (0) and the `glb_GN` row (1), then each image's 17 crops
    x 144 merged tokens (`2 + image*17*144 + crop*144 + pos`; crop 0 is the global view). Per image:
    h*12 rows of (w*12 tokens + sub_GN), glb_GN, then 12 rows of (12 global tokens + sub_GN).
    (Separators first: their index must not depend on the number of images, or ONNX tracing would
    freeze it.)
    """
    import torch

    sub_gn, glb_gn = 0, 1
    h = image_sizes[:, 0] // CROP
    w = image_sizes[:, 1] // CROP
    sub_len = h * GRID * (w * GRID + 1)
    counts = sub_len + 1 + GRID * (GRID + 1)
    ends = torch.cumsum(counts, 0)
    position = torch.arange(ends[-1])
    image = (position.unsqueeze(1) >= ends.unsqueeze(0)).sum(1)          # which image each token belongs to
    local = position - (ends - counts)[image]
    w_t, sub_t = w[image], sub_len[image]
    base = 2 + image * (CROPS * TOKENS_PER_CROP)
    # Sub-crop grid: row r, column c of an (h*12) x (w*12 + 1) grid; the last column is sub_GN.
    width = w_t * GRID + 1
    r, c = local // width, local % width
    crop = 1 + (r // GRID) * w_t + c // GRID
    sub_index = torch.where(c == w_t * GRID, sub_gn, base + crop * TOKENS_PER_CROP + (r % GRID) * GRID + c % GRID)
    # Global crop: 12 rows of 13, the last column is sub_GN.
    g = (local - sub_t - 1).clamp(min=0)
    gr, gc = g // (GRID + 1), g % (GRID + 1)
    glb_index = torch.where(gc == GRID, sub_gn, base + gr * GRID + gc)
    return torch.where(local < sub_t, sub_index, torch.where(local == sub_t, glb_gn, glb_index))


def _module_classes():
    import torch
    from torch import nn
    from transformers import CLIPVisionModel

    class Phi3VImageEmbedding(nn.Module):
        """pixel_values [images, 17, 3, 336, 336] + image_sizes [images, 2] -> image_features [tokens, hidden]."""

        def __init__(self, spec: VisionSpec, text_hidden_size: int):
            super().__init__()
            width = 4 * spec.hidden_size
            self.img_processor = CLIPVisionModel(clip_config(spec))
            self.glb_GN = nn.Parameter(torch.zeros(1, 1, width))
            self.sub_GN = nn.Parameter(torch.zeros(1, 1, 1, width))
            self.img_projection = nn.Sequential(nn.Linear(width, text_hidden_size), nn.GELU(),
                                                nn.Linear(text_hidden_size, text_hidden_size))

        def crop_features(self, pixel_values):
            """Every crop -> 144 tokens of 4 x CLIP width (second-to-last layer, no CLS, 2x2 merge)."""
            crops = pixel_values.reshape(-1, 3, CROP, CROP)
            hidden = self.img_processor(crops, output_hidden_states=True).hidden_states[-2][:, 1:]
            n, _, c = hidden.shape
            merged = hidden.reshape(n, GRID, 2, GRID, 2, c).permute(0, 1, 3, 2, 4, 5)
            return merged.reshape(n, TOKENS_PER_CROP, 4 * c)

        def forward(self, pixel_values, image_sizes):
            table = self.crop_features(pixel_values).reshape(-1, self.glb_GN.shape[-1])
            table = torch.cat([self.sub_GN.reshape(1, -1), self.glb_GN.reshape(1, -1), table])
            return self.img_projection(table[hd_token_indices(image_sizes)])

    class Phi3VEmbedding(nn.Module):
        """input_ids (image positions negative) + image_features -> inputs_embeds; 0 image rows is fine."""

        def __init__(self, embed_tokens: nn.Embedding):
            super().__init__()
            self.embed_tokens = embed_tokens

        def forward(self, input_ids, image_features):
            text = self.embed_tokens(input_ids.clamp(min=0))
            is_image = input_ids < 0
            flat = is_image.reshape(-1)
            # The k-th image position takes row k of image_features (row k+1 after a leading zero row,
            # which text positions point at, so 0 image rows works too).
            padded = torch.cat([torch.zeros_like(text[0, :1]), image_features])
            rows = torch.where(flat, torch.cumsum(flat.long(), 0), 0)
            return torch.where(is_image.unsqueeze(-1), padded[rows].reshape(text.shape), text)

    return Phi3VImageEmbedding, Phi3VEmbedding


def vision_encoder(spec: VisionSpec, text_hidden_size: int):
    """A fresh Phi-3.5-vision image encoder (random weights; load real ones with `load_vision_state`). Lab 02."""
    return _module_classes()[0](spec, text_hidden_size)


def embedding_model(embed_tokens):
    """The embedding step genai runs before the decoder, around the decoder's token embedding. Lab 02."""
    return _module_classes()[1](embed_tokens)


# transformers 5's CLIPVisionModel has no `vision_model.` level (it renames hub weights on load);
# Phi-3.5-vision's checkpoint has it: model.vision_embed_tokens.img_processor.vision_model.*
CLIP_CHECKPOINT, CLIP_MODULE = "img_processor.vision_model.", "img_processor."


def checkpoint_names(encoder_state: dict) -> dict:
    """Encoder state dict -> the key names of Phi-3.5-vision's checkpoint. Lab 02."""
    return {PREFIX + (CLIP_CHECKPOINT + k[len(CLIP_MODULE):] if k.startswith(CLIP_MODULE) else k): v
            for k, v in encoder_state.items() if not k.endswith("position_ids")}


def load_vision_state(encoder, state: dict) -> None:
    """Load a checkpoint's `model.vision_embed_tokens.*` weights; every parameter must be there. Lab 02."""
    own = {}
    for key, value in state.items():
        if key.startswith(PREFIX):
            key = key[len(PREFIX):]
            own[CLIP_MODULE + key[len(CLIP_CHECKPOINT):] if key.startswith(CLIP_CHECKPOINT) else key] = value
    missing, unexpected = encoder.load_state_dict(own, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"Vision weights do not match Phi-3.5-vision's layout: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def vision_config_block(spec: VisionSpec) -> dict:
    """The `img_processor` / `embd_layer` entries Phi-3.5-vision's config.json carries. Lab 02."""
    return {"img_processor": {"image_dim_out": spec.hidden_size, "model_name": "openai/clip-vit-large-patch14-336",
                              "name": "clip_vision_model", "num_img_tokens": TOKENS_PER_CROP, "layer_idx": -2,
                              "labkit_spec": asdict(spec)},
            "embd_layer": {"embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
                           "use_hd_transform": True, "with_learnable_separator": True}}


def create_tiny_vision(force: bool = False) -> Path:
    """A Phi-3.5-vision-shaped checkpoint: the tiny Phi-3 + a tiny CLIP encoder (random), real key names. Lab 02."""
    import torch
    from safetensors.torch import load_file, save_file

    text_dir = models.create_tiny("tiny")
    key = cache.cache_key(text_dir, asdict(TINY), EXPORT_FORMAT)
    final = paths.cache_dir() / f"tiny-vision-{key}"
    with cache.cached_dir(final, force, "the tiny-vision model") as tmp:
        if tmp is None:
            return final
        config = json.loads((text_dir / "config.json").read_text())
        torch.manual_seed(0)
        encoder = vision_encoder(TINY, config["hidden_size"])
        with torch.no_grad():   # non-zero separators, so the layout is visible in the features
            encoder.glb_GN.normal_(std=0.5)
            encoder.sub_GN.normal_(std=0.5)
        state = load_file(str(text_dir / "model.safetensors"))
        state.update({k: v.contiguous() for k, v in checkpoint_names(encoder.state_dict()).items()})
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.update(architectures=["Phi3VForCausalLM"], **vision_config_block(TINY))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        models.copy_tokenizer(text_dir, tmp)
        shutil.copy2(text_dir / "generation_config.json", tmp / "generation_config.json")
    return final


def checked_config(model_dir: Path) -> tuple[dict, VisionSpec]:
    """A Phi-3.5-vision checkpoint's config.json and its CLIP tower's shape, or a clear error. Lab 02."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    if (config.get("architectures") or [""])[0] != "Phi3VForCausalLM":
        raise ValueError(f"{model_dir} is not a Phi-3.5-vision checkpoint (architectures "
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
    (out / "config.json").write_text(json.dumps(text, indent=2))
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
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
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


def _export_onnx(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # CLIP's size check is traced as a constant: right, since every crop is 336 x 336.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False, external_data=False)


def sample_inputs():
    """Example pixel_values / image_sizes for two images (672x1008 and 336x336). Lab 02."""
    import torch

    return torch.randn(2, CROPS, 3, CROP, CROP), torch.tensor([[672, 1008], [336, 336]], dtype=torch.int64)


def resolve(model: str | Path) -> Path:
    """`tiny-vision`, a local Phi-3.5-vision folder, or a hub id -> a checkpoint folder. Lab 02."""
    return create_tiny_vision() if str(model) in ("tiny-vision", "tiny") else models.resolve_model(model)


def export(model: str | Path = "tiny-vision", precision: str = "fp32", execution_provider: str = "cpu",
           force: bool = False, progress: bool = True, check_memory: bool = True) -> Path:
    """Export a Phi-3.5-vision checkpoint to an onnxruntime-genai multimodal folder (cached, atomic). Lab 02.

    An export that needs more RAM than is available (`labkit.sizing`, measured on a shadow) is
    refused before it starts; `check_memory=False` starts it anyway."""
    from .build import BuildOptions

    BuildOptions(precision, execution_provider).validate()          # bad precision x EP fails first
    model_dir = resolve(model)
    key = cache.cache_key(model_dir, precision, execution_provider, EXPORT_FORMAT)
    final = paths.cache_dir() / "vision" / f"{model_dir.name}-{precision}-{key}"
    with cache.cached_dir(final, force, f"{precision} vision export") as tmp:
        if tmp is None:                                              # before loading GBs of weights
            return final
        if check_memory:
            need = sizing.vision_export_requirement(checked_config(model_dir)[0])
            try:
                sizing.check_fits(f"The {precision} export of {model_dir.name}", need["peak_rss_bytes"],
                                  need["basis"])
            except sizing.DoesNotFit as err:
                raise VisionError(f"{err} (export(..., check_memory=False))") from None
        _export_into(tmp, model_dir, precision, execution_provider, force, progress)
    return final


def _export_into(tmp: Path, model_dir: Path, precision: str, execution_provider: str, force: bool,
                 progress: bool) -> None:
    """The three ONNX models, genai_config.json and processor_config.json of one export, written into `tmp`."""
    import torch

    from . import build

    config, encoder, embed_weight = read_vision_part(model_dir)
    started = time.perf_counter()
    # Inside tmp: concurrent exports (another precision, another attendee) never share it.
    text_dir = text_checkpoint(config, model_dir, tmp / f"{model_dir.name}-text")
    decoder = build.build(text_dir, precision, execution_provider, force=force, progress=progress,
                          extra={"exclude_embeds": "true", "filename": TEXT_FILE})
    for f in decoder.path.iterdir():
        if f.name != "build_info.json":
            shutil.copy2(f, tmp / f.name)
    pixel_values, image_sizes = sample_inputs()
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
    genai = json.loads((tmp / "genai_config.json").read_text())
    genai["model"]["type"] = "phi3v"
    # Vision and embedding run on the decoder's execution provider (CUDA in the gpu profile).
    session = genai["model"]["decoder"].get("session_options", {})
    genai["model"]["embedding"] = {"filename": EMBEDDING_FILE, "session_options": session,
                                   "inputs": {"input_ids": "input_ids", "image_features": "image_features"},
                                   "outputs": {"inputs_embeds": "inputs_embeds"}}
    genai["model"]["vision"] = {"filename": VISION_FILE, "session_options": session,
                                "inputs": {"pixel_values": "pixel_values", "image_sizes": "image_sizes"},
                                "outputs": {"image_features": "image_features"}}
    (tmp / "genai_config.json").write_text(json.dumps(genai, indent=4))
    (tmp / "processor_config.json").write_text(json.dumps(PROCESSOR_CONFIG, indent=2))
    (tmp / "export_info.json").write_text(json.dumps(
        {"source": str(model_dir), "precision": precision, "execution_provider": execution_provider,
         "seconds": round(time.perf_counter() - started, 1), "format": EXPORT_FORMAT}, indent=2))
    shutil.rmtree(text_dir, ignore_errors=True)


PROCESSOR_CONFIG = {"processor": {"name": "image_processing", "transforms": [
    {"operation": {"name": "decode_image", "type": "DecodeImage", "attrs": {"color_space": "RGB"}}},
    {"operation": {"name": "convert_to_rgb", "type": "ConvertRGB"}},
    {"operation": {"name": "phi3_image_transform", "type": "Phi3ImageTransform",
                   "attrs": {"num_crops": 16, "num_img_tokens": TOKENS_PER_CROP}}}]}}


class VisionError(ValueError):
    """Bad multimodal input; the message says how to fix it. Lab 02."""


IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")


def check_folder(folder: str | Path) -> Path:
    """A multimodal genai folder with all three models, else a clear error. Lab 02."""
    folder = Path(folder)
    config_path = folder / "genai_config.json"
    if not config_path.exists():
        raise VisionError(f"{folder} has no genai_config.json: export one with labkit.vision.export().")
    config = json.loads(config_path.read_text())["model"]
    for part in ("vision", "embedding"):
        if part not in config:
            raise VisionError(f"{folder} is a text-only model (no '{part}' section in genai_config.json): export "
                              "the vision model with labkit.vision.export().")
        if not (folder / config[part]["filename"]).exists():
            raise VisionError(f"The {part} model {config[part]['filename']} is missing from {folder}: re-run "
                              "labkit.vision.export(..., force=True).")
    return folder


def check_images(images: list[str | Path]) -> list[Path]:
    """Every image exists and decodes, else an error naming the file. Lab 02."""
    from PIL import Image, UnidentifiedImageError

    checked = []
    for image in images:
        path = Path(image)
        if not path.exists():
            raise VisionError(f"Image {path} does not exist.")
        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise VisionError(f"{path} is not a readable image ({err}); use a PNG or JPEG file.") from None
        checked.append(path)
    return checked


def image_prompt(question: str, n_images: int) -> str:
    """The question with one `<|image_N|>` tag per image (unless it has its own tags), checked. Lab 02."""
    tags = set(IMAGE_TAG.findall(question))
    if not tags:
        return "".join(f"<|image_{i}|>\n" for i in range(1, n_images + 1)) + question
    if tags != {str(i) for i in range(1, n_images + 1)}:
        wanted = " ".join(f"<|image_{i}|>" for i in range(1, n_images + 1)) or "no tags"
        raise VisionError(f"The prompt has image tags {sorted(f'<|image_{t}|>' for t in tags)} but {n_images} "
                          f"image(s) were given; use one tag per image: {wanted}.")
    return question


@dataclass
class ImageAnswer:
    """An image Q&A result with what it cost. Lab 02."""

    text: str
    image_tokens: int
    prompt_tokens: int
    new_tokens: int
    time_to_first_token: float     # vision + embedding + prefill: genai runs them for the first token
    seconds: float

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.time_to_first_token

    @property
    def decode_tokens_per_second(self) -> float:
        rest = self.seconds - self.time_to_first_token
        return (self.new_tokens - 1) / rest if self.new_tokens > 1 and rest > 0 else float("nan")


def _load(folder: Path):
    """(model, processor, tokenizer), loaded once and shared with labkit.generate."""
    from .generate import load, load_processor

    model, tokenizer = load(str(folder))
    return model, load_processor(str(folder)), tokenizer


# genai_config provider names -> ONNX Runtime execution providers
EP_NAMES = {"cuda": "CUDAExecutionProvider", "dml": "DmlExecutionProvider", "webgpu": "WebGpuExecutionProvider"}


def session_providers(folder: str | Path) -> list[str]:
    """The ONNX Runtime providers of the folder's genai_config (CUDA in the gpu profile), then CPU. Lab 02."""
    config = json.loads((Path(folder) / "genai_config.json").read_text())
    options = config["model"]["decoder"].get("session_options", {}).get("provider_options", [])
    chosen = [EP_NAMES[name] for entry in options for name in entry if name in EP_NAMES]
    return chosen + ["CPUExecutionProvider"]


def vision_seconds(folder: str | Path, image: str | Path, runs: int = 3) -> float:
    """Median time of the vision model alone on one processed image, on the folder's EP (after a warm-up). Lab 02.

    Inside `ask` the vision model runs as part of the first generated token (genai's own pipeline);
    this measures it on its own, once, where a table wants the split.
    """
    import statistics

    import onnxruntime as ort
    import onnxruntime_genai as og

    folder = check_folder(folder)
    model, processor, tokenizer = _load(folder)
    inputs = processor(image_prompt("", 1), images=og.Images.open(str(check_images([image])[0])))
    session = ort.InferenceSession(str(folder / VISION_FILE), providers=session_providers(folder))
    feeds = {"pixel_values": inputs["pixel_values"].as_numpy(), "image_sizes": inputs["image_sizes"].as_numpy()}
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ask(folder: str | Path, question: str, images: list[str | Path] = (), max_new_tokens: int = 48,
        on_token=None, system: str | None = None) -> ImageAnswer:
    """Answer a question about zero or more images with onnxruntime-genai, streaming. Lab 02.

    Everything is checked before the model runs: the folder, the images, the image tags, and that
    prompt + image tokens + max_new_tokens fit the context.
    """
    import onnxruntime_genai as og

    from .generate import chat_prompt, context_length

    folder = check_folder(folder)
    paths_ = check_images(list(images))
    model, processor, tokenizer = _load(folder)
    user = image_prompt(question, len(paths_))
    prompt = chat_prompt(tokenizer, user, system)
    og_images = og.Images.open(*[str(p) for p in paths_]) if paths_ else None
    inputs = processor(prompt, images=og_images)
    ids = inputs["input_ids"].as_numpy()
    n_image = int((ids < 0).sum())
    limit = context_length(folder)
    if ids.shape[-1] + max_new_tokens > limit:
        per_image = ", ".join(f"image {k}: {int((ids == -k).sum())}" for k in range(1, len(paths_) + 1))
        raise VisionError(f"The prompt is {ids.shape[-1]} tokens ({n_image} of them image tokens: {per_image}); "
                          f"with max_new_tokens={max_new_tokens} that exceeds the context length {limit}. Use "
                          "fewer or smaller images (each costs (h*w+1)*144 + 1 + (h+1)*12 tokens for h x w "
                          "crops of 336 px) or a shorter question.")
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=ids.shape[-1] + max_new_tokens)
    generator = og.Generator(model, params)
    stream = processor.create_stream()
    pieces, first = [], None
    started = time.perf_counter()
    generator.set_inputs(inputs)
    while not generator.is_done():
        generator.generate_next_token()
        if first is None:
            first = time.perf_counter() - started
        piece = stream.decode(generator.get_next_tokens()[0])
        pieces.append(piece)
        if on_token:
            on_token(piece)
    seconds = time.perf_counter() - started
    new = len(generator.get_sequence(0)) - ids.shape[-1]
    del generator
    return ImageAnswer("".join(pieces), n_image, int(ids.shape[-1]), new, first or seconds, seconds)


def verify(folder: str | Path, model: str | Path = "tiny-vision", image: str | Path | None = None,
           new_tokens: int = 12) -> dict:
    """Check the export against PyTorch on one image: vision and embedding outputs, greedy tokens. Lab 02."""
    import numpy as np
    import onnxruntime_genai as og

    from . import data
    from .generate import chat_prompt

    folder = check_folder(folder)
    config, text_state, encoder = read_checkpoint(resolve(model))
    image = Path(image) if image else data.images()[0]
    model_, processor, tokenizer = _load(folder)
    inputs = processor(chat_prompt(tokenizer, "<|image_1|>\nDescribe it."), images=og.Images.open(str(image)))
    input_ids = inputs["input_ids"].as_numpy().astype(np.int64)
    features, embeds = _compare_vision_and_embedding(folder, inputs, encoder, text_state)
    genai_tokens = _genai_greedy(model_, inputs, input_ids.shape[-1], new_tokens)
    torch_tokens = _torch_greedy(config, text_state, embeds["torch"], new_tokens)
    return {"image": image.name, "image_tokens": int((input_ids < 0).sum()),
            "vision_max_abs_diff": float(np.abs(features["onnx"] - features["torch"]).max()),
            "embedding_max_abs_diff": float(np.abs(embeds["onnx"] - embeds["torch"].numpy()).max()),
            "greedy_tokens_match": genai_tokens == torch_tokens[:len(genai_tokens)] and len(genai_tokens) > 0,
            "genai_tokens": genai_tokens, "torch_tokens": torch_tokens}


def _compare_vision_and_embedding(folder: Path, inputs, encoder, text_state: dict) -> tuple[dict, dict]:
    """Image features and input embeddings from the ONNX models and from PyTorch, on the same inputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    pixel_values = inputs["pixel_values"].as_numpy()
    image_sizes = inputs["image_sizes"].as_numpy().astype(np.int64)
    input_ids = inputs["input_ids"].as_numpy().astype(np.int64)
    session = ort.InferenceSession(str(folder / VISION_FILE), providers=session_providers(folder))
    onnx_features = session.run(None, {"pixel_values": pixel_values, "image_sizes": image_sizes})[0]
    with torch.no_grad():
        torch_features = encoder(torch.from_numpy(pixel_values), torch.from_numpy(image_sizes))
    embed = torch.nn.Embedding.from_pretrained(text_state["model.embed_tokens.weight"].float())
    session = ort.InferenceSession(str(folder / EMBEDDING_FILE), providers=session_providers(folder))
    onnx_embeds = session.run(None, {"input_ids": input_ids, "image_features": onnx_features})[0]
    with torch.no_grad():
        torch_embeds = embedding_model(embed)(torch.from_numpy(input_ids), torch_features)
    return {"onnx": onnx_features, "torch": torch_features.numpy()}, {"onnx": onnx_embeds, "torch": torch_embeds}


def _torch_greedy(config: dict, text_state: dict, embeds, new_tokens: int) -> list[int]:
    """Greedy tokens of the PyTorch decoder, fed the PyTorch embeddings."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    net = Phi3ForCausalLM(Phi3Config.from_dict(text_config(config))).eval()
    net.load_state_dict(text_state, strict=False)
    embed = torch.nn.Embedding.from_pretrained(text_state["model.embed_tokens.weight"].float())
    tokens = []
    with torch.no_grad():
        for _ in range(new_tokens):
            token = int(net(inputs_embeds=embeds).logits[0, -1].argmax())
            tokens.append(token)
            embeds = torch.cat([embeds, embed(torch.tensor([[token]]))], dim=1)
    return tokens


def _genai_greedy(model, inputs, prompt_tokens: int, new_tokens: int) -> list[int]:
    """Greedy tokens of onnxruntime-genai end to end (processor inputs -> vision -> embedding -> decoder)."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=prompt_tokens + new_tokens, min_length=prompt_tokens + new_tokens)
    generator = og.Generator(model, params)
    generator.set_inputs(inputs)
    while not generator.is_done():
        generator.generate_next_token()
    tokens = [int(t) for t in generator.get_sequence(0)[prompt_tokens:]]
    del generator
    return tokens


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
    from . import results
    from .profiles import get_profile

    recorded = results.find("02_vision_export", "exports") or {}
    for folder in recorded.values():
        if Path(folder).exists():
            return Path(folder)
    prof = get_profile(profile)
    return export(prof.vision_model, "int4", prof.execution_provider)
