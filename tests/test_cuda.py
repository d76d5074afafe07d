"""The gpu profile's code paths on the tiny models (run by `make test-gpu`; skipped without CUDA)."""

import pytest

from labkit import build, data, generate, images, vision_export

pytestmark = pytest.mark.cuda


def test_fp16_and_int4_builds_generate_on_cuda(tiny_dir):
    for precision in ("fp16", "int4"):
        built = build.build(tiny_dir, precision, "cuda", progress=False)
        assert "cuda" in built.path.name
        out = generate.generate(built.path, "Tell me a fact.", max_new_tokens=8)
        assert out.new_tokens > 0


def test_vision_export_on_cuda():
    folder = vision_export.export("tiny-vision", "fp16", "cuda", progress=False)
    answer = images.ask(folder, "What is it?", data.images()[:1], max_new_tokens=6)
    assert answer.image_tokens == 1921 and answer.new_tokens > 0
