"""Phi-3.5-vision's image encoder in PyTorch, with the checkpoint's own parameter names. Lab 02.

Written here on top of transformers' `CLIPVisionModel`, with the parameter names of
`microsoft/Phi-3.5-vision-instruct` (`model.vision_embed_tokens.*`), so the real weights load
without `trust_remote_code` or modeling code from a hub repository:
CLIP ViT-L/14-336, second-to-last layer, class token dropped; 2x2 neighbouring patches merged
(24x24 -> 12x12 = 144 tokens of 4 x 1024 per crop); the sub-crops laid out as one big grid with a
learned `sub_GN` token closing each row, then `glb_GN`, then the global crop (also with row ends);
a 2-layer MLP projects to the decoder's width.

The layout is computed with tensor index arithmetic (no Python loop over images), so one ONNX
graph serves any number of images of any size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import InputError
from ..runtime.images import CROP, CROPS, GRID, TOKENS_PER_CROP

PREFIX = "model.vision_embed_tokens."


@dataclass(frozen=True)
class VisionSpec:
    """The CLIP tower's shape. `TINY` for the CPU profile; `REAL` is Phi-3.5-vision's. Lab 02."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128


TINY = VisionSpec()


REAL = VisionSpec(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)


def _clip_config(spec: VisionSpec):
    """CLIP ViT-x/14 at 336 px with `spec`'s width and depth (quick_gelu, as CLIP ViT-L/14-336). Lab 02."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                            image_size=CROP, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                            projection_dim=768, attn_implementation="eager")


def _spans(counts):
    """For a tensor of per-image counts: each item's image and its index within that image (exportable)."""
    import torch

    ends = torch.cumsum(counts, 0)
    position = torch.arange(ends[-1])
    image = (position.unsqueeze(1) >= ends.unsqueeze(0)).sum(1)
    return image, position - (ends - counts)[image]


def _used_crops(image_sizes):
    """Rows of `pixel_values.reshape(-1, 3, 336, 336)` the layout reads: each image's global crop and h x w
    sub-crops. The processor pads every image to 17 crops with zeros, so a 4:3 photo has 13 used crops of 17
    (a 16:9 one 16, a square all 17): encoding only those gives the same features, a 4:3 photo in 13/17 of the
    time. Lab 02."""
    h, w = image_sizes[:, 0] // CROP, image_sizes[:, 1] // CROP
    image, crop = _spans(1 + h * w)
    return image * CROPS + crop


def _hd_token_indices(image_sizes):
    """For every image token, the row of the feature table it takes (tensor ops only, exportable). Lab 02.

    The table starts with the `sub_GN` row (0) and the `glb_GN` row (1), then each image's used crops
    (`_used_crops`) x 144 merged tokens (`2 + first_crop(image)*144 + crop*144 + pos`; crop 0 is the global
    view). Per image: h*12 rows of (w*12 tokens + sub_GN), glb_GN, then 12 rows of (12 global tokens + sub_GN).
    (Separators first: their index must not depend on the number of images, or ONNX tracing would
    freeze it.)
    """
    import torch

    sub_gn, glb_gn = 0, 1
    h = image_sizes[:, 0] // CROP
    w = image_sizes[:, 1] // CROP
    sub_len = h * GRID * (w * GRID + 1)
    image, local = _spans(sub_len + 1 + GRID * (GRID + 1))              # each token's image, its place there
    used = 1 + h * w
    w_t, sub_t = w[image], sub_len[image]
    base = 2 + (torch.cumsum(used, 0) - used)[image] * TOKENS_PER_CROP
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
            self.img_processor = CLIPVisionModel(_clip_config(spec))
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
            crops = pixel_values.reshape(-1, 3, CROP, CROP)[_used_crops(image_sizes)]
            table = self.crop_features(crops).reshape(-1, self.glb_GN.shape[-1])
            table = torch.cat([self.sub_GN.reshape(1, -1), self.glb_GN.reshape(1, -1), table])
            return self.img_projection(table[_hd_token_indices(image_sizes)])

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
_CLIP_CHECKPOINT, _CLIP_MODULE = "img_processor.vision_model.", "img_processor."


def checkpoint_names(encoder_state: dict) -> dict:
    """Encoder state dict -> the key names of Phi-3.5-vision's checkpoint. Lab 02."""
    return {PREFIX + (_CLIP_CHECKPOINT + k[len(_CLIP_MODULE):] if k.startswith(_CLIP_MODULE) else k): v
            for k, v in encoder_state.items() if not k.endswith("position_ids")}


def load_vision_state(encoder, state: dict) -> None:
    """Load a checkpoint's `model.vision_embed_tokens.*` weights; every parameter must be there. Lab 02."""
    own = {}
    for key, value in state.items():
        if key.startswith(PREFIX):
            key = key[len(PREFIX):]
            own[_CLIP_MODULE + key[len(_CLIP_CHECKPOINT):] if key.startswith(_CLIP_CHECKPOINT) else key] = value
    missing, unexpected = encoder.load_state_dict(own, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(f"Vision weights do not match Phi-3.5-vision's layout: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def vision_config_block(spec: VisionSpec) -> dict:
    """The `img_processor` / `embd_layer` entries Phi-3.5-vision's config.json carries. Lab 02."""
    return {"img_processor": {"image_dim_out": spec.hidden_size, "model_name": "openai/clip-vit-large-patch14-336",
                              "name": "clip_vision_model", "num_img_tokens": TOKENS_PER_CROP, "layer_idx": -2,
                              "labkit_spec": asdict(spec)},
            "embd_layer": {"embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
                           "use_hd_transform": True, "with_learnable_separator": True}}
