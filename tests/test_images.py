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
