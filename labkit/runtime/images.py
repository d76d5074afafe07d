"""Image prompts on a Phi-3.5-vision folder with onnxruntime-genai: checks, the image-token cost, `ask`. Lab 02.

genai runs the whole multimodal pipeline for the first token of every image prompt:

    processor (C++: decode, HD transform into 16 crops + 1 global, 336x336 each)
      -> vision.onnx     pixel_values [images, 17, 3, 336, 336], image_sizes [images, 2]
                         -> image_features [image tokens, hidden]
      -> embedding.onnx  input_ids (image positions are negative) + image_features -> inputs_embeds
      -> text.onnx       the Phi-3 decoder (model builder, `exclude_embeds=true`)

An image padded to h x w crops of 336 px costs (h*w + 1) * 144 + 1 + (h + 1) * 12 tokens
(e.g. padded to 1008 x 1344, h=3, w=4: 1921 tokens). `labkit.vision_export` makes such a folder.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import LabkitError
from . import loop
from .generate import (
    chat_prompt,
    check_control_tokens,
    check_text,
    check_token_counts,
    context_length,
    control_tokens,
    load,
    load_processor,
)

CROP = 336            # pixels per crop side


CROPS = 17            # 16 sub-crops (the C++ transform always pads to 16) + 1 global


GRID = 12             # 24x24 CLIP patches merged 2x2 -> 12x12 tokens per crop


TOKENS_PER_CROP = GRID * GRID


VISION_FILE, EMBEDDING_FILE, TEXT_FILE = ("phi-3.5-v-instruct-vision.onnx", "phi-3.5-v-instruct-embedding.onnx",
                                          "phi-3.5-v-instruct-text.onnx")


def image_tokens(height: int, width: int) -> int:
    """Image tokens for an image padded to `height` x `width` pixels (multiples of 336). Lab 02."""
    h, w = height // CROP, width // CROP
    return (h * w + 1) * TOKENS_PER_CROP + 1 + (h + 1) * GRID


class VisionError(LabkitError, ValueError):
    """Bad multimodal input; the message says how to fix it. Lab 02."""


_IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")


def check_folder(folder: str | Path) -> Path:
    """A multimodal genai folder with all three models, else a clear error. Lab 02."""
    folder = Path(folder)
    config_path = folder / "genai_config.json"
    if not config_path.exists():
        raise VisionError(f"{folder} has no genai_config.json: export one with labkit.vision.export().")
    config = json.loads(config_path.read_text(encoding="utf-8"))["model"]
    for part in ("vision", "embedding"):
        if part not in config:
            raise VisionError(f"{folder} is a text-only model (no '{part}' section in genai_config.json): export "
                              "the vision model with labkit.vision.export().")
        if not (folder / config[part]["filename"]).exists():
            raise VisionError(f"The {part} model {config[part]['filename']} is missing from {folder}: re-run "
                              "labkit.vision.export(..., force=True).")
    return folder


def _check_images(images: list[str | Path]) -> list[Path]:
    """Every image exists and decodes, else an error naming the file; absolute paths. Lab 02.

    Absolute because og 0.12.2's `Images.open` garbles three or more short path strings ("Image path does
    not exist: " with an empty name)."""
    from PIL import Image, UnidentifiedImageError

    checked = []
    for image in images:
        path = Path(image).expanduser().resolve()
        if not path.is_file():
            raise VisionError(f"Image {image} does not exist{' (it is a folder)' if path.is_dir() else ''}.")
        try:
            with Image.open(path) as img:
                img.verify()
        except Image.DecompressionBombError:
            raise VisionError(f"{image} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more than PIL opens "
                              "safely: the model sees it as 336-pixel crops anyway, so shrink it below 4,000 x "
                              "4,000 first.") from None
        except (UnidentifiedImageError, OSError) as err:
            reason = str(err).replace(f"'{path}'", "").replace(str(path), "").replace("  ", " ").strip()
            raise VisionError(f"{image} is not a readable image ({reason}); use a PNG or JPEG file.") from None
        checked.append(path)
    return checked


def image_prompt(question: str, n_images: int) -> str:
    """The question with one `<|image_N|>` tag per image (unless it has its own tags), checked. Lab 02."""
    tags = set(_IMAGE_TAG.findall(question))
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
    tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.time_to_first_token

    @property
    def decode_tokens_per_second(self) -> float:
        rest = self.seconds - self.time_to_first_token
        return (self.new_tokens - 1) / rest if self.new_tokens > 1 and rest > 0 else float("nan")


def load_vision_model(folder: Path):
    """(model, processor, tokenizer) of a multimodal folder, loaded once and shared with labkit.generate. Lab 02."""
    model, tokenizer = load(str(folder))
    return model, load_processor(str(folder)), tokenizer


# genai_config provider names -> ONNX Runtime execution providers
_EP_NAMES = {"cuda": "CUDAExecutionProvider", "dml": "DmlExecutionProvider", "webgpu": "WebGpuExecutionProvider"}


def session_providers(folder: str | Path) -> list[str]:
    """The ONNX Runtime providers of the folder's genai_config (CUDA in the gpu profile), then CPU. Lab 02."""
    config = json.loads((Path(folder) / "genai_config.json").read_text(encoding="utf-8"))
    options = config["model"]["decoder"].get("session_options", {}).get("provider_options", [])
    chosen = [_EP_NAMES[name] for entry in options for name in entry if name in _EP_NAMES]
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
    model, processor, tokenizer = load_vision_model(folder)
    inputs = processor(image_prompt("", 1), images=og.Images.open(str(_check_images([image])[0])))
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

    check_text(question, "question")
    check_token_counts(max_new_tokens)
    folder = check_folder(folder)
    check_control_tokens(question, folder, "question",
                         allowed=[t for t in control_tokens(str(folder)) if _IMAGE_TAG.fullmatch(t)])
    if system is not None:
        check_control_tokens(check_text(system, "system message"), folder, "system message")
    paths_ = _check_images(list(images))
    model, processor, tokenizer = load_vision_model(folder)
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
    generator = loop.new_generator(model, max_length=ids.shape[-1] + max_new_tokens)
    out = loop.run(generator, inputs, stream=processor.create_stream(), on_token=on_token)
    del generator
    return ImageAnswer(out.text, n_image, int(ids.shape[-1]), len(out.tokens), out.first_token_seconds, out.seconds,
                       list(out.tokens))
