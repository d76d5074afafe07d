"""Real size: shadow checkpoints, build requirements, and `make bench-scale` (its quick variant)."""

import json
import shlex
import subprocess
import sys

import pytest

from labkit import paths, plan, scale, shadow, sizing

GB = 1e9


# ------------------------------------------------------------------ shadows
def test_shadow_has_phi35_minis_published_architecture():
    config = shadow.shadow_config("phi-3.5-mini")
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (3072, 8192, 32)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (32, 32, 32064)
    assert (config["original_max_position_embeddings"], config["max_position_embeddings"]) == (4096, 131072)
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert len(config["rope_scaling"]["long_factor"]) == len(config["rope_scaling"]["short_factor"]) == head_dim // 2
    assert shadow.count_parameters(config) == 3_821_079_552            # the published 3.8B
    assert sizing.parameters_of(config) == shadow.count_parameters(config)
    shallow = shadow.shadow_config("phi-3.5-mini", layers=4)
    assert shallow["num_hidden_layers"] == 4 and shallow["hidden_size"] == 3072


@pytest.mark.parametrize("layers", [0, 33, 2.5])
def test_shadow_depth_is_checked(layers):
    with pytest.raises(shadow.ShadowError, match="1 to 32 decoder layers"):
        shadow.shadow_config("phi-3.5-mini", layers)


def test_unknown_shadow_names_the_choices():
    with pytest.raises(shadow.ShadowError, match="phi-3.5-mini"):
        shadow.shadow_config("phi-4")


def test_shadow_weights_are_deterministic_and_sharded_within_bounds():
    a = shadow.random_tensor("model.layers.0.mlp.down_proj.weight", (64, 32))
    b = shadow.random_tensor("model.layers.0.mlp.down_proj.weight", (64, 32))
    c = shadow.random_tensor("model.layers.1.mlp.down_proj.weight", (64, 32))
    assert a.dtype.is_floating_point and str(a.dtype) == "torch.bfloat16"
    assert (a == b).all() and not (a == c).all()
    assert (shadow.random_tensor("model.norm.weight", (8,)) == 1).all()
    shapes = shadow.parameter_shapes(shadow.shadow_config("phi-3.5-mini"))
    shards = shadow.plan_shards(shapes)
    assert sum(len(s) for s in shards) == len(shapes)
    for names in shards:   # bounded creation memory: no shard above the limit (one tensor alone may be)
        assert len(names) == 1 or sum(2 * __import__("math").prod(shapes[n]) for n in names) <= shadow.SHARD_BYTES


def test_one_layer_shadow_is_a_checkpoint_transformers_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    from transformers import AutoConfig

    folder = shadow.create_shadow("phi-3.5-mini", layers=1, progress=False)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(shadow.parameter_shapes(shadow.shadow_config("phi-3.5-mini", 1)))
    config = AutoConfig.from_pretrained(folder)
    assert config.num_hidden_layers == 1 and config.hidden_size == 3072
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert shadow.create_shadow("phi-3.5-mini", layers=1, progress=False) == folder     # cached


# ------------------------------------------------------------------ requirements and refusals
def test_requirement_scales_with_parameters():
    full = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini"))
    assert full["basis"] == "measured on the full-size Phi-3.5-mini shadow"
    assert full["peak_rss_bytes"] == sizing.MEASURED_PHI35_MINI["int4"]["peak_rss_bytes"]
    half = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini", 16))
    assert sizing.PROCESS_OVERHEAD_BYTES < half["peak_rss_bytes"] < full["peak_rss_bytes"]
    assert "scaled to" in half["basis"]
    assert sizing.build_requirement("fp32", shadow.shadow_config("phi-3.5-mini"))["size_bytes"] > 15 * GB


def test_refusal_names_requirement_available_and_total():
    with pytest.raises(sizing.DoesNotFit, match=r"about 7\.5 GB.*4\.0 GB available of 16\.0 GB"):
        sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(4 * GB),
                          total_bytes=int(16 * GB))
    sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(12 * GB),
                      total_bytes=int(16 * GB))


def test_bench_scale_skips_what_does_not_fit_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 2, "total_ram_bytes": int(8 * GB),
                                                    "available_ram_bytes": int(3 * GB), "free_disk_bytes": 0})
    monkeypatch.setattr(scale, "measure_depth", lambda *a, **k: pytest.fail("started a build that cannot fit"))
    monkeypatch.setattr(scale.bench, "memory_bandwidth", lambda: {"read_gb_s": 50.0})
    monkeypatch.setattr(shadow, "create_shadow", lambda *a, **k: tmp_path)
    result = scale.run_bench_scale(None, ("int4", "fp32"), out=tmp_path / "bs.json")
    assert "3.0 GB is available" in result["int4"]["skipped"]
    assert result["fp32"]["required_size_bytes"] > 15 * GB
    assert json.loads((tmp_path / "bs.json").read_text())["int4"]["skipped"]
    assert "not built" in scale.format_scale(result)


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
def makefile_recipe(target: str) -> list[str]:
    """The command a Makefile target runs, with `$(PY)` as this interpreter."""
    lines = (paths.REPO / "Makefile").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{target}:")))
    command = lines[start + 1].strip().replace("$(PY)", sys.executable)
    return shlex.split(command)


def test_bench_scale_quick_variant_builds_runs_and_extrapolates(tmp_path):
    """`make bench-scale-quick` as the Makefile runs it (to a JSON file of its own, not runs/)."""
    out = tmp_path / "bench-scale.json"
    command = makefile_recipe("bench-scale-quick")
    assert command[1:4] == ["-m", "labkit", "bench-scale"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=600)
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
    assert 0 < row["bandwidth_fraction"] < 1.5
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


# ------------------------------------------------------------------ the laptop profile's plan
def test_lab03_takes_the_tiny_model_on_a_laptop_unless_asked():
    mini = "microsoft/Phi-3.5-mini-instruct"
    model, why = plan.training_model("laptop", mini, 128, 120)
    assert model == "tiny" and "full_size_training = True" in why
    hours = float(why.split("about ")[1].split(" h")[0])
    assert 5 < hours < 20          # per-layer measurements on shadows: ≈ 3.6 h AWQ + 6.2 h LoRA on 2 cores
    assert plan.training_model("laptop", mini, 128, 120, full_size_training=True) == (mini, "")
    assert plan.training_model("cpu", "tiny", 128, 120) == ("tiny", "")
    assert plan.training_model("laptop", "some/local-folder", 128, 120)[0] == "some/local-folder"
    fewer = sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), 32, 30)["hours"]
    assert fewer < sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), 128, 120)["hours"]


def test_lab00_plan_judges_each_lab_against_this_machine(monkeypatch):
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01"]
    assert [r["fits_here"] for r in builds] == ["yes", "yes"]         # INT4 7.7 GB, INT8 9.0 GB of 12 GB
    export = sizing.vision_export_requirement(shadow.shadow_config("phi-3.5-vision"))
    vision = next(r for r in plan.lab_plan("laptop") if r["lab"] == "02")
    need = max(export["peak_rss_bytes"], plan.VISION_PROMPT_RSS_BYTES)    # export, then an image prompt
    assert vision["peak_ram_gb"] == round(need / GB, 1)
    assert vision["fits_here"] == ("yes" if need <= 12 * GB else "no")
    assert {r["lab"] for r in plan.lab_plan("laptop")} == {"00", "01", "02", "03", "04", "05"}
    downloads = next(r for r in plan.lab_plan("laptop") if r["lab"] == "00")
    assert downloads["disk_gb"] == pytest.approx(18.7)
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(8 * GB),
                                                    "available_ram_bytes": int(6 * GB),
                                                    "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01"]
    assert [r["fits_here"] for r in builds] == ["no", "no"]
    assert all(r["fits_here"] == "yes" for r in plan.lab_plan("cpu"))


def test_vision_shadow_exports_and_times_image_prompts():
    """The vision part of bench-scale on a 1-layer decoder, 1-layer CLIP shadow of Phi-3.5-vision."""
    config = shadow.shadow_config("phi-3.5-vision")
    assert shadow.count_parameters(config) == 4_146_621_440           # the published 4.2B
    assert "labkit_spec" not in config["img_processor"]               # exactly the published config keys
    row = scale.measure_vision(layers=1, vision_layers=1, runs=1, progress=False)
    assert row["peak_rss_bytes"] > 0 and row["build_seconds"] > 0 and row["size_bytes"] > 0.3 * GB
    images = row["images"]
    # genai's transform always pads to 16 crops + 1 global: a small square costs more than a 4:3 photo
    assert images["1344x1008"]["image_tokens"] == 1921                 # (3*4 + 1) * 144 + 1 + 4 * 12
    assert images["336x336"]["image_tokens"] == 2509
    assert all(image["vision_prefill_seconds"] > 0 for image in images.values())
    assert "1921 image tokens" in "\n".join(scale.vision_lines(row))


def test_memwatch_counts_the_whole_process_tree(tmp_path):
    """A child holding ~300 MB that starts a grandchild holding ~300 MB: the tree's peak is their sum."""
    from labkit import memwatch

    hold = "import numpy, time; a = numpy.ones(300 * 2**20, dtype=numpy.uint8); time.sleep(1.5)"
    parent = (f"import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', {hold!r}]); {hold}; "
              "child.wait(); print('done'); sys.exit(7)")
    run = memwatch.run([sys.executable, "-c", parent], interval=0.1)
    assert run.returncode == 7 and "done" in run.output
    assert run.peak_rss_bytes > 2 * 300 * 2**20            # both processes at once, not the larger one alone
    assert run.seconds >= 1.5
