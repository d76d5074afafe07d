import json
import subprocess
import sys

import pytest
import torch
from helpers import checkpoint_folder, low_memory

from labkit import data, images, shadow, vision_checkpoint, vision_encoder, vision_export, vision_verify


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    enc = vision_encoder.vision_encoder(vision_encoder.TINY, 128).eval()
    with torch.no_grad():
        enc.glb_GN.normal_()
        enc.sub_GN.normal_()
    return enc


@pytest.fixture(scope="module")
def exported():
    """The export as PyTorch computes it: fp32 decoder, fp32 image encoder."""
    return vision_export.export("tiny-vision", "fp32", progress=False, encoder="fp32")


def loop_reference(enc, pixel_values, sizes):
    """Phi-3.5-vision's own per-image layout code (loop form), for comparison with the vectorized one."""
    feats = enc.crop_features(pixel_values).reshape(len(sizes), images.CROPS, 144, -1)
    width = feats.shape[-1]
    out = []
    for i, (height, wide) in enumerate(sizes.tolist()):
        h, w = height // 336, wide // 336
        glb = feats[i, 0].reshape(1, 12, 12, width)
        glb = torch.cat([glb, enc.sub_GN.repeat(1, 12, 1, 1)], dim=2).reshape(1, -1, width)
        sub = feats[i, 1:1 + h * w].reshape(1, h, w, 12, 12, width).permute(0, 1, 3, 2, 4, 5)
        sub = torch.cat([sub.reshape(1, h * 12, w * 12, width), enc.sub_GN.repeat(1, h * 12, 1, 1)], dim=2)
        out.append(torch.cat([sub.reshape(1, -1, width), enc.glb_GN, glb], dim=1)[0])
    return enc.img_projection(torch.cat(out))


def test_hd_layout_matches_the_reference_and_the_token_formula(encoder):
    sizes = torch.tensor([[672, 1008], [336, 336], [1344, 336]])
    pixel_values = torch.randn(3, images.CROPS, 3, 336, 336)
    with torch.no_grad():
        features = encoder(pixel_values, sizes)
        reference = loop_reference(encoder, pixel_values, sizes)
    assert features.shape == (sum(images.image_tokens(h, w) for h, w in sizes.tolist()), 128)
    assert torch.equal(features, reference)


def test_the_encoder_never_reads_the_processors_padding_crops(encoder, exported):
    """Only each image's global crop and h x w sub-crops are encoded: padding set to NaN changes nothing,
    in PyTorch and in the exported vision.onnx."""
    import numpy as np
    import onnxruntime as ort

    sizes = torch.tensor([[672, 1008], [336, 336]])                  # 1 + 2x3 and 1 + 1x1 used crops of 17
    pixel_values = torch.randn(2, images.CROPS, 3, 336, 336)
    padded = pixel_values.clone()
    padded[0, 7:], padded[1, 2:] = float("nan"), float("nan")
    with torch.no_grad():
        assert torch.equal(encoder(padded, sizes), loop_reference(encoder, pixel_values, sizes))
    session = ort.InferenceSession(str(exported / images.VISION_FILE), providers=["CPUExecutionProvider"])
    feed = {"image_sizes": sizes.numpy()}
    clean = session.run(None, {**feed, "pixel_values": pixel_values.numpy()})[0]
    assert np.array_equal(session.run(None, {**feed, "pixel_values": padded.numpy()})[0], clean)
    assert np.isfinite(clean).all()


def test_token_formula_known_values():
    assert images.image_tokens(336, 336) == 313
    assert images.image_tokens(1008, 1344) == 1921
    assert images.image_tokens(1344, 1344) == 2509


def real_checkpoint_keys(layers: int) -> set[str]:
    """Phi-3.5-vision's vision key names, written out from its checkpoint's layout."""
    p = "model.vision_embed_tokens."
    clip = p + "img_processor.vision_model."
    keys = {p + "glb_GN", p + "sub_GN", p + "img_projection.0.weight", p + "img_projection.0.bias",
            p + "img_projection.2.weight", p + "img_projection.2.bias",
            clip + "embeddings.class_embedding", clip + "embeddings.patch_embedding.weight",
            clip + "embeddings.position_embedding.weight", clip + "pre_layrnorm.weight", clip + "pre_layrnorm.bias",
            clip + "post_layernorm.weight", clip + "post_layernorm.bias"}
    for i in range(layers):
        layer = f"{clip}encoder.layers.{i}."
        for part in ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "layer_norm1",
                     "mlp.fc1", "mlp.fc2", "layer_norm2"):
            keys |= {f"{layer}{part}.weight", f"{layer}{part}.bias"}
    return keys


def test_parameter_names_match_the_real_checkpoint(encoder):
    names = vision_encoder.checkpoint_names(encoder.state_dict())
    assert set(names) == real_checkpoint_keys(vision_encoder.TINY.num_layers)
    fake = {k: torch.full_like(v, 0.25) for k, v in names.items()}
    fake["model.embed_tokens.weight"] = torch.zeros(4, 4)          # text weights are ignored
    fresh = vision_encoder.vision_encoder(vision_encoder.TINY, 128)
    vision_encoder.load_vision_state(fresh, fake)
    assert all(torch.all(v == 0.25) for k, v in fresh.state_dict().items() if "position_ids" not in k)
    fake.pop("model.vision_embed_tokens.sub_GN")
    with pytest.raises(ValueError, match="sub_GN"):
        vision_encoder.load_vision_state(vision_encoder.vision_encoder(vision_encoder.TINY, 128), fake)


def test_embedding_fills_image_rows_in_order_and_accepts_none():
    embed = torch.nn.Embedding(10, 4)
    model = vision_encoder.embedding_model(embed)
    features = torch.arange(8.0).reshape(2, 4)
    out = model(torch.tensor([[3, -1, -1, 5]]), features)
    assert torch.equal(out[0, 1:3], features) and torch.equal(out[0, 0], embed.weight[3])
    assert torch.equal(model(torch.tensor([[3, 5]]), torch.zeros(0, 4))[0], embed.weight[[3, 5]])


def test_export_matches_pytorch(exported):
    check = vision_verify.verify(exported, "tiny-vision", new_tokens=8)
    assert check["image_tokens"] == 1921       # beach.png is padded to 1008 x 1344
    assert check["vision_max_abs_diff"] < 1e-4 and check["embedding_max_abs_diff"] < 1e-4
    assert check["greedy_tokens_match"], check


def test_the_decoder_computes_logits_for_the_last_position_only(exported):
    """prune_lm_head: an image prompt's ~1,900 positions skip the LM head (the test above: same greedy tokens)."""
    import onnx

    graph = onnx.load(exported / images.TEXT_FILE, load_external_data=False).graph
    logits = next(out for out in graph.output if out.name == "logits")
    dims = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim]
    assert dims == ["batch_size", 1, 32064]


def test_wrong_checkpoint_is_a_clear_error(tiny_dir):
    with pytest.raises(ValueError, match="not a Phi-3.5-vision checkpoint"):
        vision_checkpoint.read_checkpoint(tiny_dir)


PLAIN_SCRIPT = """
import sys, onnxruntime_genai as og
model = og.Model(sys.argv[1])
processor = model.create_multimodal_processor()
inputs = processor("<|user|>\\n<|image_1|>\\nWhat is it?<|end|>\\n<|assistant|>\\n", images=og.Images.open(sys.argv[2]))
params = og.GeneratorParams(model)
params.set_search_options(max_length=2000)
generator = og.Generator(model, params)
generator.set_inputs(inputs)
count = 0
while not generator.is_done() and count < 8:
    generator.generate_next_token()
    count += 1
print(count, int((inputs["input_ids"].as_numpy() < 0).sum()))
del generator, params, inputs, processor, model
"""


def test_export_runs_in_a_plain_genai_script(exported):
    done = subprocess.run([sys.executable, "-c", PLAIN_SCRIPT, str(exported), str(data.images()[0])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "1921"]


def test_laptop_profile_refuses_a_vision_export_that_does_not_fit(monkeypatch, tmp_path):
    from labkit import images, vision_export

    low_memory(monkeypatch, 3, 8)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    folder = checkpoint_folder(tmp_path, "vision-ckpt", shadow.shadow_config("phi-3.5-vision"))
    monkeypatch.setattr(vision_export, "_export_into", lambda *a, **k: pytest.fail("the export started"))
    with pytest.raises(images.VisionError, match=r"needs about \d+\.\d GB.*3\.0 GB available of 8\.0 GB"):
        vision_export.export(folder, "int4")


def test_a_real_size_export_runs_in_a_process_of_its_own(monkeypatch, tmp_path):
    """Above `CHILD_PROCESS_PARAMETERS` the export's memory goes back to the system when its process ends (a laptop
    then has room to load the exported model); forced here on the tiny model, into a cache of its own."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    folder = vision_export.export("tiny-vision", "int4", in_child=True, progress=False, encoder="fp32")
    assert {vision_export.VISION_FILE, vision_export.EMBEDDING_FILE, vision_export.TEXT_FILE} <= \
        {p.name for p in folder.iterdir()}
    assert not (folder / "export_result.json").exists()
    log = (folder.parent / "logs" / f"{folder.name}.log").read_text()
    assert "torch.onnx.export" in log, "the child process's output goes to the step's log"
    answer = images.ask(folder, "What is it?", [data.images()[0]], max_new_tokens=2)
    assert answer.image_tokens == 1921 and answer.new_tokens > 0


def test_the_cpu_default_quantizes_the_image_encoder_and_links_the_rest(exported):
    import onnx

    folder = vision_export.export("tiny-vision", "fp32", progress=False)          # the CPU default: int8
    assert folder != exported and folder.name.startswith(exported.name + "-encoder-int8-")
    graph = onnx.load(folder / images.VISION_FILE).graph
    weights = {w.name for w in graph.initializer}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in graph.node}
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and weights & set(n.input)], \
        "every MatMul with weights is int8 (attention's two activation MatMuls stay)"
    # smaller even on the tiny model, whose graph is most of the file (at full size: a quarter)
    assert (folder / images.VISION_FILE).stat().st_size < 0.7 * (exported / images.VISION_FILE).stat().st_size
    for name in (images.TEXT_FILE, images.EMBEDDING_FILE, "genai_config.json", "tokenizer.json"):
        assert (folder / name).read_bytes() == (exported / name).read_bytes(), name
        assert (folder / name).stat().st_ino == (exported / name).stat().st_ino, f"{name}: linked, not copied"
    info = json.loads((folder / "export_info.json").read_text())
    assert info["encoder"] == "int8" and info["fp32_encoder_export"] == str(exported)
    assert vision_export.export("tiny-vision", "fp32", progress=False) == folder          # cached
    compared = vision_verify.compare_encoders(exported, folder, data.images(), new_tokens=6)
    assert [row["image"] for row in compared["images"]] == [p.name for p in data.images()]
    assert all(row["feature error %"] < 5 and row["feature cosine"] > 0.99 for row in compared["images"])
    assert 0 <= compared["answer tokens agree %"] <= 100
    features_only = vision_verify.compare_encoders(exported, folder, data.images()[:1], new_tokens=0)
    assert "answer tokens agree %" not in features_only and len(features_only["images"]) == 1


def test_an_encoder_that_cannot_run_is_refused_before_any_export(monkeypatch):
    monkeypatch.setattr(vision_export, "resolve", lambda *a: pytest.fail("no checkpoint before the check"))
    with pytest.raises(images.VisionError, match="encoder='int4': choose int8 .* or fp32"):
        vision_export.export("tiny-vision", "int4", encoder="int4")
    with pytest.raises(images.VisionError, match="CPU only .* on cuda use encoder='fp32'"):
        vision_export.export("tiny-vision", "fp16", "cuda", encoder="int8")
    assert vision_export.check_encoder(None, "cuda") == "fp32" and vision_export.check_encoder("", "cpu") == "int8"


def test_the_int8_encoder_uses_7_bit_weights_where_16_bit_sums_saturate(monkeypatch):
    """x86 without VNNI: onnxruntime's u8 x s8 kernel saturates (the tiny model's features 12-17 % off fp32's)."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(vision_export.sizing, "int8_instructions", lambda: "AVX2 (no VNNI)")
    assert vision_export.int8_encoder_options()["reduce_range"] is True
    monkeypatch.setattr(vision_export.sizing, "int8_instructions", lambda: "AVX-512 VNNI")
    options = vision_export.int8_encoder_options()
    assert options["reduce_range"] is False and options["weight_type"] == "QInt8" and options["per_channel"]
