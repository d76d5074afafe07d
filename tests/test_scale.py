"""Real size: shadow checkpoints, build requirements, and `make bench-scale` (its quick variant)."""

import json
import subprocess
import sys

import pytest

from labkit import scale, shadow, sizing

GB = 1e9


def test_bench_scale_skips_what_does_not_fit_before_building(monkeypatch, tmp_path, capsys):
    """Held to the memory limit once, before anything runs (the measured peaks include reclaimable mapped pages)."""
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 2, "total_ram_bytes": int(3 * GB),
                                                    "available_ram_bytes": int(2 * GB), "free_disk_bytes": 0})
    monkeypatch.setattr(sizing, "memory_limit_bytes", lambda: int(3 * GB))
    monkeypatch.setattr(scale, "measure_depth", lambda *a, **k: pytest.fail("started a build that cannot fit"))
    monkeypatch.setattr(scale.bench, "memory_bandwidth", lambda: {"read_gb_s": 50.0})
    monkeypatch.setattr(shadow, "create_shadow", lambda *a, **k: tmp_path)
    monkeypatch.setattr(shadow, "bytes_to_create", lambda *a, **k: 0)
    monkeypatch.setattr(scale, "measure_vision", lambda *a, **k: pytest.fail("exported a model that cannot fit"))
    result = scale.run_bench_scale(None, ("int4", "fp32"), out=tmp_path / "bs.json", phi4=True, vision=True)
    assert "this machine has 3.0 GB" in result["int4"]["skipped"]
    printed = capsys.readouterr().out
    assert "Phi-4-mini skipped: its INT4 build needs ≈" in printed and "Phi-3.5-vision skipped" in printed
    assert result["fp32"]["required_size_bytes"] > 15 * GB
    assert json.loads((tmp_path / "bs.json").read_text())["int4"]["skipped"]
    assert "not built" in scale.format_scale(result)


def test_bench_scale_refuses_a_run_the_disk_cannot_hold_before_its_first_build(monkeypatch, tmp_path):
    """Shadows still to create and outputs not yet cached add up; FP32 (deleted once measured) and rebuilt outputs
    need room one at a time. Refused with the numbers before anything is created or built."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    need = scale.disk_needed(None, ("int4", "int8", "fp32"), vision=True, phi4=True)
    assert need["shadows"] > 3 * 7 * GB                          # Phi-3.5-mini, Phi-4-mini, Phi-3.5-vision in bf16
    assert need["one rebuild at a time"] == sizing.build_requirement("fp32", shadow.shadow_config())["size_bytes"]
    (tmp_path / "builds" / f"{shadow.folder_name()}-int8-b128-acc4-0123456789ab").mkdir(parents=True)
    held = scale.disk_needed(None, ("int4", "int8", "fp32"))
    assert held["new builds and exports"] == _build_bytes(("int4",)), "a cached int8 is replaced, not added"
    (tmp_path / "builds" / f"{shadow.folder_name()}-int4-0123456789ab").mkdir()     # the builder's default blocks
    assert scale.disk_needed(None, ("int4", "int8", "fp32")) == held, "another INT4 build is not the laptop one"
    monkeypatch.setattr(scale.shutil, "disk_usage", lambda path: type("Usage", (), {"free": int(20 * GB)}))
    monkeypatch.setattr(shadow, "create_shadow", lambda *a, **k: pytest.fail("created a shadow the disk cannot hold"))
    monkeypatch.setattr(scale.bench, "memory_bandwidth", lambda: pytest.fail("started measuring"))
    with pytest.raises(scale.ScaleError, match=r"Not enough disk for this bench-scale run: it writes about \d+ GB "
                                               r"\(shadows .*20\.0 GB free.*--precisions int4 int8"):
        scale.run_bench_scale(None, ("int4", "int8", "fp32"), vision=True, phi4=True, out=tmp_path / "bs.json")
    assert not (tmp_path / "bs.json").exists()


def test_each_image_measurement_frees_its_export_before_the_next(monkeypatch):
    """Two full-size Phi-3.5-vision exports loaded at once do not fit 16 GB: each split unloads what it loaded."""
    from labkit.runtime import generate, images

    events = []
    answer = type("Answer", (), {"time_to_first_token": 2.0, "image_tokens": 1921, "prompt_tokens": 1932})
    monkeypatch.setattr(images, "ask", lambda folder, *a, **k: events.append(("ask", folder)) or answer)
    monkeypatch.setattr(images, "vision_seconds", lambda folder, *a, **k: events.append(("encoder", folder)) or 0.5)
    monkeypatch.setattr(generate, "unload", lambda: events.append(("unload", None)))
    for folder in ("default", "fp32-encoder"):
        split = scale._first_token_split(folder, "photo.png", runs=1, warmup=True)
        assert split["embedding_prefill_seconds"] == 1.5
    assert [kind for kind, _ in events] == ["ask", "ask", "encoder", "unload"] * 2


def _build_bytes(precisions) -> int:
    return sum(sizing.build_requirement(p, shadow.shadow_config())["size_bytes"] for p in precisions)


def test_extrapolation_is_linear_per_layer_and_never_shrinks():
    low = {"size_bytes": 100, "build_seconds": 10, "peak_rss_bytes": 1000, "load_seconds": 1.0,
           "weight_bytes_per_token": 90, "prefill_tok_s": 100.0, "decode_tok_s": 50.0}
    high = {"size_bytes": 150, "build_seconds": 15, "peak_rss_bytes": 1500, "load_seconds": 0.9,
            "weight_bytes_per_token": 140, "prefill_tok_s": 50.0, "decode_tok_s": 25.0}
    out = scale.extrapolate(low, high, 1, 2, 32)
    assert out["size_bytes"] == 100 + 50 * 31 and out["peak_rss_bytes"] == 1000 + 500 * 31
    assert out["decode_tok_s"] == pytest.approx(1 / (0.02 + 0.02 * 31))    # time per token is linear
    assert out["load_seconds"] == 0.9                                       # noise never makes a cost fall


# ------------------------------------------------------------------ the quick variant, end to end
def test_bench_scale_quick_variant_builds_runs_and_extrapolates(bench_scale_quick):
    """`make bench-scale-quick` as the Makefile runs it (to a JSON file of its own, not runs/), with one timed run
    per depth instead of its five: the timings are not what this test checks. It runs in the background from the
    session's start (tests/conftest.py)."""
    done, out = bench_scale_quick.done, bench_scale_quick.out
    assert done.args[1:4] == ["-m", "labkit", "bench-scale"] and done.args[-4:] == ["--runs", "1", "--out", str(out)]
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("model", "layers", "parameters", "checkpoint"):
        assert key in result
    assert result["layers"] == 32 and result["extrapolated"] and result["measured_layers"] == [1, 2]
    row = result["int4"]
    assert set(scale.FIELDS) | {"dir", "bandwidth_fraction"} <= set(row)
    assert row["extrapolated"] and set(row["measured"]) == {"1", "2"}
    assert 2.0 * GB <= row["size_bytes"] <= 3.0 * GB         # the published CPU INT4 folder is 2.78 GB
    measured = row["measured"]["2"]
    assert measured["peak_rss_bytes"] > 0.5 * GB and measured["decode_tok_s"] > 0
    # A timing is no assertion (this runs beside the course): the fraction is the decode rate over its bound.
    assert row["bandwidth_fraction"] == pytest.approx(row["decode_tok_s"] / row["bandwidth_bound_tok_s"])
    assert row["bandwidth_bound_tok_s"] > 0
    assert "int4" in done.stdout and "extrapolated from 1 and 2 layers" in done.stdout
    # what labs 01 and 05 show from the file
    assert scale.read(out) == result
    shown = scale.table(result)
    assert list(shown.index) == ["int4"] and shown.loc["int4", "size_gb"] == round(row["size_bytes"] / GB, 2)
    fig = scale.plot_scale(result)
    ram_ax, speed_ax = fig.axes
    assert ram_ax.patches[0].get_height() == pytest.approx(row["peak_rss_bytes"] / GB)
    assert speed_ax.patches[0].get_height() == pytest.approx(row["decode_tok_s"])


def test_plain_genai_script_generates_from_a_shadow_build(tmp_path):
    """What an attendee runs after lab 01: only onnxruntime_genai, on a real-width INT4 build."""
    from labkit import build

    folder = build.build(shadow.create_shadow("phi-3.5-mini", layers=1, progress=False), "int4", progress=False)
    script = (
        "import onnxruntime_genai as og, sys\n"
        "model = og.Model(sys.argv[1]); tok = og.Tokenizer(model)\n"
        "params = og.GeneratorParams(model); params.set_search_options(max_length=24)\n"
        "gen = og.Generator(model, params); gen.append_tokens(tok.encode('The old baker'))\n"
        "n = 0\n"
        "while not gen.is_done():\n"
        "    gen.generate_next_token(); n += 1\n"
        "print('generated', n)\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder.path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "generated" in done.stdout and int(done.stdout.split()[-1]) > 0


@pytest.mark.laptop
def test_vision_shadow_exports_and_times_image_prompts():
    """The vision part of bench-scale on a 1-layer decoder, 1-layer CLIP shadow of Phi-3.5-vision: the export the
    laptop profile's quick run makes in lab 02 (the same shadow, cached), the image prompts timed here. In
    `make test-laptop` with that run: building the export alone took `make test` 2 minutes."""
    config = shadow.shadow_config("phi-3.5-vision")
    assert shadow.count_parameters(config) == 4_146_621_440           # the published 4.2B
    assert "labkit_spec" not in config["img_processor"]               # exactly the published config keys
    row = scale.measure_vision(layers=1, vision_layers=1, runs=1, warmup=False, progress=False, fresh=False)
    assert row["peak_rss_bytes"] > 0 and row["build_seconds"] > 0 and row["size_bytes"] > 0.3 * GB
    images = row["images"]
    # genai's transform always pads to 16 crops + 1 global: a small square costs more than a 4:3 photo
    assert images["1344x1008"]["image_tokens"] == 1921                 # (3*4 + 1) * 144 + 1 + 4 * 12
    assert images["336x336"]["image_tokens"] == 2509
    assert all(image["vision_prefill_seconds"] > 0 and image["vision_seconds"] > 0 for image in images.values())
    assert all(image["embedding_prefill_seconds"] == pytest.approx(max(image["vision_prefill_seconds"]
                                                                       - image["vision_seconds"], 0))
               for image in images.values())
    assert "1921 image tokens" in "\n".join(scale.vision_lines(row))
    # the default export's image encoder is int8; the photo again through the fp32-encoder export, in the same run
    assert row["encoder"] == "int8" and "encoder-int8" in row["dir"]
    assert "encoder-int8" not in row["fp32_encoder"]["dir"]
    photo = row["fp32_encoder"]["images"]["1344x1008"]
    assert photo["image_tokens"] == 1921 and photo["vision_seconds"] > 0
    assert row["photo_first_token_vs_fp32_encoder"] == pytest.approx(
        images["1344x1008"]["vision_prefill_seconds"] / photo["vision_prefill_seconds"])
    assert "1344x1008, fp32 image encoder" in "\n".join(scale.vision_lines(row))


def test_labs_fall_back_to_the_reference_measurements(tmp_path, monkeypatch):
    """Without this machine's runs/bench-scale.json, labs 01 and 05 show the committed reference run, labelled."""
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))
    reference = scale.read()
    assert reference["reference"] and not reference["extrapolated"] and reference["layers"] == 32
    assert {"int4", "int8", "fp32"} <= set(reference) and "checkpoint" not in reference, "no local paths committed"
    assert not any("dir" in row for row in reference.values() if isinstance(row, dict))
    assert scale.source_line(reference).startswith("The course's reference measurements (")
    assert "as the laptop profile builds them (blocks of 128" in scale.source_line(reference)
    vision = reference["vision"]
    assert vision["encoder"] == "int8" and vision["images"][scale.PHOTO]["image_tokens"] == 1921
    assert vision["photo_first_token_vs_fp32_encoder"] == pytest.approx(
        vision["images"][scale.PHOTO]["vision_prefill_seconds"]
        / vision["fp32_encoder"]["images"][scale.PHOTO]["vision_prefill_seconds"])
    assert "1344x1008, fp32 image encoder" in "\n".join(scale.vision_lines(vision))
    fractions = [reference[p]["bandwidth_fraction"] for p in ("int4", "int8", "fp32")]
    assert max(fractions) <= 1.0 + 1e-9, "no decode is faster than its bound"
    assert len(scale.table(reference)) == 3
    assert scale.read(reference=False) is None
    mine = {**{k: v for k, v in reference.items() if k != "reference"}, "measured_on": "2027-01-01",
            "quantized": {"block_size": 128}}
    (tmp_path / "bench-scale.json").write_text(json.dumps(mine))
    assert "reference" not in scale.read() and "measured 2027-01-01" in scale.source_line(scale.read())
    assert "as the laptop profile builds them" in scale.source_line(scale.read())


def test_a_decode_faster_than_the_read_benchmark_raises_the_bound():
    """No decode reads weights faster than memory delivers: one that does shows the benchmark fell short."""
    result = {"memory_bandwidth_gb_s": {"read_gb_s": 30.0},
              "int4": {"decode_tok_s": 10.0, "weight_bytes_per_token": 2e9},       # 20 GB/s
              "fp32": {"decode_tok_s": 3.0, "weight_bytes_per_token": 15e9},       # 45 GB/s
              "phi-4-mini": {"int4": {"decode_tok_s": 5.0, "weight_bytes_per_token": 3e9}}}
    scale.with_bound(result)
    assert result["memory_bandwidth_gb_s"]["bound_gb_s"] == pytest.approx(45.0)
    assert result["fp32"]["bandwidth_fraction"] == pytest.approx(1.0)
    assert result["int4"]["bandwidth_fraction"] == pytest.approx(20 / 45)
    assert result["phi-4-mini"]["int4"]["bandwidth_fraction"] == pytest.approx(15 / 45)
    assert "the FP32 build's decode read its weights at 45.0 GB/s" in scale.bound_line(result)
    slow = scale.with_bound({"memory_bandwidth_gb_s": {"read_gb_s": 30.0},
                             "int4": {"decode_tok_s": 10.0, "weight_bytes_per_token": 2e9}})
    assert slow["int4"]["bandwidth_fraction"] == pytest.approx(20 / 30)
    assert scale.bound_line(slow) == "the read benchmark's 30.0 GB/s"
