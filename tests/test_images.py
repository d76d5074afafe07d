"""Image prompts (labkit.images): providers, costs, checks before the model runs."""

import json
import shutil

import pytest

from labkit import data, images, vision_export


@pytest.fixture(scope="module")
def exported():
    return vision_export.export("tiny-vision", "fp32", progress=False)


# ------------------------------------------------------------------ the gpu profile's code paths
def genai_folder(tmp_path, provider_options):
    folder = tmp_path / "m"
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text(json.dumps({"model": {"decoder": {"session_options": {
        "provider_options": provider_options}}}}))
    return folder


def test_vision_and_embedding_sessions_follow_the_decoders_provider(tmp_path):
    assert images.session_providers(genai_folder(tmp_path, [{"cuda": {}}])) == ["CUDAExecutionProvider",
                                                                              "CPUExecutionProvider"]
    assert images.session_providers(genai_folder(tmp_path / "cpu", [])) == ["CPUExecutionProvider"]


def test_ask_does_not_run_the_vision_model_a_second_time(monkeypatch):
    monkeypatch.setattr(images, "vision_seconds", lambda *a, **k: pytest.fail("ask() re-ran the vision model"))
    folder = vision_export.export("tiny-vision", "int4", progress=False)
    from labkit import data
    assert images.ask(folder, "What is it?", data.images()[:1], max_new_tokens=2).image_tokens == 1921


def test_ask_with_no_one_and_two_images(exported):
    one = images.ask(exported, "What is it?", data.images()[:1], max_new_tokens=8)
    assert one.image_tokens == 1921 and one.new_tokens > 0 and one.time_to_first_token > 0
    assert images.vision_seconds(exported, data.images()[0], runs=1) > 0
    none = images.ask(exported, "Tell me a fact.", [], max_new_tokens=8)
    assert none.image_tokens == 0 and none.text
    two = images.ask(exported, "Compare <|image_1|> with <|image_2|>.", data.images()[:2], max_new_tokens=4)
    assert two.image_tokens > one.image_tokens


def test_bad_inputs_fail_before_running(exported, tmp_path, monkeypatch):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(images.VisionError, match="not a readable image"):
        images.ask(exported, "What is it?", [fake])
    with pytest.raises(images.VisionError, match="does not exist"):
        images.ask(exported, "What is it?", [tmp_path / "missing.png"])
    with pytest.raises(images.VisionError, match="one tag per image"):
        images.ask(exported, "<|image_1|> vs <|image_2|>", data.images()[:1])
    # these two aborted the process inside onnxruntime-genai / answered the text before the NUL
    with pytest.raises(ValueError, match="Need 1 <= max_new_tokens"):
        images.ask(exported, "What is it?", data.images()[:1], max_new_tokens=0)
    with pytest.raises(ValueError, match="question has .* at position 4"):
        images.ask(exported, "What\x00 is it?", data.images()[:1])
    monkeypatch.setattr("labkit.runtime.images.context_length", lambda _: 1000)
    with pytest.raises(images.VisionError, match="image 1: 1921"):
        images.ask(exported, "What is it?", data.images()[:1])


def test_missing_vision_model_is_named(exported, tiny_builds, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / images.VISION_FILE).unlink()
    with pytest.raises(images.VisionError, match="vision model .* is missing"):
        images.ask(broken, "What is it?", data.images()[:1])
    with pytest.raises(images.VisionError, match="text-only"):
        images.check_folder(tiny_builds["int4"].path)


def test_huge_images_and_short_relative_paths(exported, tmp_path, monkeypatch):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)         # beach.png is then a "decompression bomb"
    with pytest.raises(images.VisionError, match="more than 2,000 pixels, more than PIL opens safely"):
        images.ask(exported, "What is it?", data.images()[:1])
    monkeypatch.undo()
    # og 0.12.2 garbles three or more short path strings ("Image path does not exist: "): labkit passes absolute ones
    monkeypatch.chdir(data.images()[0].parent)
    names = [p.name for p in data.images()[:3]]
    assert images._check_images(names) == [p.resolve() for p in data.images()[:3]]


# ------------------------------------------------------------------ threads of every session
def _intra_op_workers(profiles) -> set[int]:
    """The numbers of intra-op worker threads (beside the caller's) ONNX Runtime's profiles show for the nodes run."""
    counts = set()
    for profile in profiles:
        for event in json.loads(profile.read_text()):
            if event.get("cat") == "Node":
                stats = event["args"].get("thread_scheduling_stats") or {}    # "" without an intra-op pool
                counts.add(len(stats.get("sub_threads", {})))
    return counts


_ASK = """
import sys
import onnxruntime_genai as og
folder, loader, image = sys.argv[1:]
if loader == "labkit":
    from labkit import generate
    model = generate.open_model(folder, threads=2)
elif loader == "app.py":
    import importlib.util
    spec = importlib.util.spec_from_file_location("app", "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    model = app.load_model(folder, threads=2)
else:
    model = og.Model(folder)
inputs = model.create_multimodal_processor()("<|user|>\\n<|image_1|>\\nWhat is it?<|end|>\\n<|assistant|>\\n",
                                             images=og.Images.open(image))
params = og.GeneratorParams(model)
params.set_search_options(max_length=inputs["input_ids"].shape()[-1] + 2)
generator = og.Generator(model, params)
generator.set_inputs(inputs)
generator.generate_next_token()
"""


def _ask_profiled(exported, tmp_path, loader):
    """One image prompt (in a child: ONNX Runtime writes its profiles as the process ends) on a copy of the export
    whose sessions write profiles into tmp_path."""
    import subprocess
    import sys

    from labkit import paths

    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    config = json.loads((folder / "genai_config.json").read_text())
    for part in ("decoder", "vision", "embedding"):
        config["model"][part]["session_options"] = {**config["model"][part]["session_options"],
                                                    "enable_profiling": str(tmp_path / f"profile-{part}")}
    (folder / "genai_config.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-c", _ASK, str(folder), loader, str(data.images()[0])],
                          cwd=paths.REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {part: sorted(tmp_path.glob(f"profile-{part}*.json")) for part in ("decoder", "vision")}


@pytest.mark.parametrize("loader", ["labkit", "app.py"])
def test_the_image_encoder_and_the_decoder_run_on_every_core(exported, tmp_path, loader):
    """og's default runs each CPU session on one thread; labkit and app.py give every session the machine's cores."""
    profiles = _ask_profiled(exported, tmp_path, loader)
    assert profiles["vision"] and profiles["decoder"]
    assert _intra_op_workers(profiles["vision"]) == _intra_op_workers(profiles["decoder"]) == {1}   # 2 threads


def test_og_left_to_its_default_runs_the_image_encoder_on_one_thread(exported, tmp_path):
    """Why labkit and app.py set the threads: when this fails, onnxruntime-genai's default uses the cores itself."""
    profiles = _ask_profiled(exported, tmp_path, "og")
    assert profiles["vision"] and _intra_op_workers(profiles["vision"]) == {0}
