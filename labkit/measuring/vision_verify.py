"""Check a vision export against PyTorch on one image: features, embeddings, greedy tokens. Lab 02."""

from __future__ import annotations

from pathlib import Path

from ..core import data
from ..making.vision_checkpoint import read_checkpoint, resolve, text_config
from ..making.vision_encoder import embedding_model
from ..runtime import loop
from ..runtime.generate import chat_prompt
from ..runtime.images import EMBEDDING_FILE, VISION_FILE, check_folder, load_vision_model, session_providers


def verify(folder: str | Path, model: str | Path = "tiny-vision", image: str | Path | None = None,
           new_tokens: int = 12) -> dict:
    """Check the export against PyTorch on one image: vision and embedding outputs, greedy tokens. Lab 02."""
    import numpy as np
    import onnxruntime_genai as og

    folder = check_folder(folder)
    config, text_state, encoder = read_checkpoint(resolve(model))
    image = Path(image) if image else data.images()[0]
    model_, processor, tokenizer = load_vision_model(folder)
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
    length = prompt_tokens + new_tokens
    generator = loop.new_generator(model, max_length=length, min_length=length)
    tokens = loop.run(generator, inputs).tokens
    del generator
    return tokens


def compare_encoders(fp32_dir: str | Path, int8_dir: str | Path, image_paths: list[str | Path],
                     question: str = "What do you see in this picture?", new_tokens: int = 16) -> dict:
    """The int8 image encoder against the fp32 one, per image: the image features' relative L2 error and cosine,
    and the share of greedy answer tokens that agree (position by position, over the longer answer; `new_tokens`
    0: features only). Lab 02."""
    import numpy as np
    import onnxruntime as ort
    import onnxruntime_genai as og

    from ..runtime import images

    folders = {"fp32": check_folder(fp32_dir), "int8": check_folder(int8_dir)}
    sessions = {k: ort.InferenceSession(str(f / VISION_FILE), providers=session_providers(f))
                for k, f in folders.items()}
    _, processor, _ = load_vision_model(folders["fp32"])
    rows = []
    for image in map(Path, image_paths):
        inputs = processor(images.image_prompt("", 1), images=og.Images.open(str(image)))
        feeds = {"pixel_values": inputs["pixel_values"].as_numpy(), "image_sizes": inputs["image_sizes"].as_numpy()}
        a, b = (sessions[k].run(None, feeds)[0].astype(np.float64).ravel() for k in ("fp32", "int8"))
        row = {"image": image.name, "feature error %": 100 * float(np.linalg.norm(a - b) / np.linalg.norm(a)),
               "feature cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))}
        if new_tokens:
            answers = {k: images.ask(f, question, [image], new_tokens).tokens for k, f in folders.items()}
            same = sum(x == y for x, y in zip(answers["fp32"], answers["int8"]))
            row["answer tokens agree %"] = 100 * same / max(len(answers["fp32"]), len(answers["int8"]), 1)
        rows.append(row)
    summary = {"images": rows, "mean feature error %": float(np.mean([r["feature error %"] for r in rows]))}
    if new_tokens:
        summary["answer tokens agree %"] = float(np.mean([r["answer tokens agree %"] for r in rows]))
    return summary
