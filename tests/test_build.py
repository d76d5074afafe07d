import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import onnx
import pytest
from helpers import checkpoint_folder, low_memory

from labkit import bench, build, cache, generate, models, shadow, sizing


# ------------------------------------------------------------------ option validation (no building)
@pytest.mark.parametrize("kwargs, message", [
    (dict(precision="fp16", execution_provider="cpu"), "fp16 runs on: cuda, dml, webgpu"),
    (dict(precision="int2"), "Unknown precision 'int2'"),
    (dict(precision="int4", execution_provider="tpu"), "Unknown execution provider"),
    (dict(precision="int4", block_size=48), "block_size=48 is invalid"),
    (dict(precision="int4", accuracy_level=7), "accuracy_level=7 is invalid"),
    (dict(precision="int4", algorithm="gptq"), "algorithm='gptq' is invalid"),
    (dict(precision="fp32", block_size=32), "only applies to int4/int8"),
    (dict(precision="int8", algorithm="rtn"), "algorithm only applies to int4"),
    (dict(precision="int4", block_size="32"), "block_size='32' must be a whole number (int), e.g. block_size=32"),
    (dict(precision="int4", accuracy_level=4.0), "accuracy_level=4.0 must be a whole number"),
    (dict(precision="int4", extra={"int4_block_size": "7"}), "pass block_size= instead"),
])
def test_bad_options_fail_before_any_work(monkeypatch, kwargs, message):
    def no_model(*_):
        raise AssertionError("the model was resolved before the options were checked")
    monkeypatch.setattr(models, "resolve_model", no_model)
    with pytest.raises(build.BuildError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build.build("tiny", **kwargs)


def test_build_all_checks_every_variant_first(monkeypatch):
    monkeypatch.setattr(build, "build", lambda *a, **k: pytest.fail("built before checking all variants"))
    with pytest.raises(build.BuildError, match="block_size=100"):
        build.build_all("tiny", ["fp32", "int4"], "cpu", [{"block_size": 32}, {"block_size": 100}])


def test_option_names_and_cli():
    opts = build.BuildOptions("int4", block_size=64, accuracy_level=4, algorithm="k_quant")
    assert opts.name == "int4-k_quant-b64-acc4"
    assert opts.cli("tiny", "out") == ("python -m onnxruntime_genai.models.builder -m tiny -o out -p int4 -e cpu "
                                       "-c cache --extra_options int4_block_size=64 int4_accuracy_level=4 "
                                       "int4_algo_config=k_quant && python -m labkit keep-tokenizer tiny out")
    assert build.BuildOptions("int8").cli("my model", "x").startswith("python -m labkit build 'my model' --precision "
                                                                       "int8 --execution-provider cpu")


def test_the_summarys_command_line_builds_a_folder_og_loads(tiny_builds, tmp_path):
    """Lab 01's summary: the INT4 row's command, run as shown in an empty folder, gives a folder og answers from."""
    line = build.summary({"int4": tiny_builds["int4"]}).loc["int4", "cli"]
    bin_dir = str(Path(sys.executable).parent)
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert shlex.split(line)[6] == "int4" and (tmp_path / "int4" / "genai_config.json").exists()
    assert generate.generate(tmp_path / "int4", "Hello", max_new_tokens=4).new_tokens > 0


def test_k_quant_blocks_that_split_a_row_unevenly_are_refused_before_building(monkeypatch):
    # The tiny model's hidden size 192 holds three blocks of 64; the builder would fail deep in quantization.
    monkeypatch.setattr(build, "_run_logged", lambda *a, **k: pytest.fail("started building"))
    with pytest.raises(build.BuildError, match=r"hidden_size=192 holds 3\. Use block_size one of \[16, 32\]"):
        build.build("tiny", "int4", algorithm="k_quant", block_size=64)


# ------------------------------------------------------------------ bad model input
def fake_checkpoint(folder, architecture="Phi3ForCausalLM", tokenizer=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def test_unsupported_architecture_lists_supported(tmp_path):
    with pytest.raises(build.BuildError, match="cannot build architecture 'BertModel'.*Phi3ForCausalLM"):
        build.build(fake_checkpoint(tmp_path / "bert", "BertModel"), "int4")


def test_missing_tokenizer_and_missing_folder(tmp_path):
    with pytest.raises(build.BuildError, match="no tokenizer"):
        build.build(fake_checkpoint(tmp_path / "m", tokenizer=False), "int4")
    with pytest.raises(FileNotFoundError):
        build.build(str(tmp_path / "does-not-exist"), "int4")


def test_not_enough_disk_fails_cleanly(tiny_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10, 10, 0))
    with pytest.raises(build.BuildError, match="Not enough disk"):
        build.build(tiny_dir, "fp32")
    assert not [p for p in (tmp_path / "builds").iterdir() if p.name != "logs" and not p.name.endswith(".lock")]


# ------------------------------------------------------------------ cache and atomic output
def test_cache_hit_reuses_the_build_and_force_rebuilds(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    first = build.build(tiny_dir, "int4", progress=False)
    assert not first.cached and (first.path / "model.onnx").exists()
    stamp = (first.path / "model.onnx").stat().st_mtime_ns
    again = build.build(tiny_dir, "int4", progress=False)
    assert again.cached and again.path == first.path
    assert (again.path / "model.onnx").stat().st_mtime_ns == stamp, "a cache hit must not rebuild"
    other = build.build(tiny_dir, "int4", block_size=64, progress=False)
    assert other.path != first.path, "options are part of the key"
    forced = build.build(tiny_dir, "int4", force=True, progress=False)
    assert not forced.cached and forced.path == first.path
    assert "Reading decoder layer" in forced.log.read_text(), "the builder's log goes to the log file"


def test_model_content_is_part_of_the_key(tiny_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    before = cache.model_fingerprint(copy)
    assert before == cache.model_fingerprint(tiny_dir)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"hidden_act"', '"hidden_act" '))
    assert cache.model_fingerprint(copy) != before


def test_failed_build_leaves_previous_build_and_no_partial_folder(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    good = build.build(tiny_dir, "fp32", progress=False)
    good_bytes = (good.path / "model.onnx").read_bytes()

    def crash(model_dir, out_dir, *args):
        (out_dir / "model.onnx").write_text("half written")
        raise RuntimeError("killed half-way")
    monkeypatch.setattr(build, "_run_builder", crash)
    with pytest.raises(build.BuildError, match="(?s)killed half-way.*Full log"):
        build.build(tiny_dir, "fp32", force=True, progress=False)
    assert (good.path / "model.onnx").read_bytes() == good_bytes
    with pytest.raises(build.BuildError):
        build.build(tiny_dir, "int4", algorithm="rtn", progress=False)
    leftovers = [p.name for p in (tmp_path / "builds").iterdir()
                 if p.name not in ("logs", good.path.name) and not p.name.endswith(".lock")]
    assert leftovers == [], "no temp or half-finished folders"


def test_build_prints_nothing_but_progress(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    build.build(tiny_dir, "int4", progress=False)
    out = capsys.readouterr()
    assert out.out == "" and "Reading" not in out.err


# ------------------------------------------------------------------ what the builds contain
def matmul_bits(model_dir):
    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    return {next(a.i for a in n.attribute if a.name == "bits") for n in model.graph.node if n.op_type == "MatMulNBits"}


def test_precisions_produce_the_expected_kernels(tiny_builds):
    assert matmul_bits(tiny_builds["fp32"].path) == set()
    assert matmul_bits(tiny_builds["int8"].path) == {8}
    assert matmul_bits(tiny_builds["int4"].path) == {4}
    sizes = {p: b.size_bytes for p, b in tiny_builds.items()}
    assert sizes["int4"] < sizes["int8"] < sizes["fp32"]


def zero_points(model_dir) -> set[bool]:
    """For each MatMulNBits: does it take a zero-point input (asymmetric levels)?"""
    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    return {len(n.input) > 3 and bool(n.input[3]) for n in model.graph.node if n.op_type == "MatMulNBits"}


def test_builder_options_reach_the_builder_as_the_cli_parses_them(tiny_builds, tmp_path, monkeypatch):
    """`int4_is_symmetric=false` is a string on the CLI; the builder's own parser makes it False. Passed raw to
    `create_model`, "false" would be truthy and the build silently symmetric (lab 03's RTN/AWQ comparison)."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    assert zero_points(tiny_builds["int4"].path) == {False}, "the builder's default: symmetric, scales only"
    asymmetric = build.build("tiny", "int4", algorithm="rtn", extra={"int4_is_symmetric": "false"}, progress=False)
    assert zero_points(asymmetric.path) == {True}
    assert asymmetric.size_bytes > tiny_builds["int4"].size_bytes, "a zero point per block costs bytes"


def test_quantized_perplexity_stays_close_to_fp32(tiny_builds):
    ppl = {p: bench.perplexity(b.path) for p, b in tiny_builds.items()}
    assert ppl["fp32"] < 0.001 * 32064, "the tiny model is trained, far below a uniform guess over its vocabulary"
    assert abs(ppl["int8"] / ppl["fp32"] - 1) <= 0.02
    assert abs(ppl["int4"] / ppl["fp32"] - 1) <= 0.10


PLAIN_SCRIPT = """
import sys, onnxruntime_genai as og
model = og.Model(sys.argv[1])
tokenizer = og.Tokenizer(model)
messages = '[{"role": "user", "content": "What should I eat in Lisbon?"}]'
prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
params = og.GeneratorParams(model)
params.set_search_options(max_length=40)
generator = og.Generator(model, params)
generator.append_tokens(tokenizer.encode(prompt))
out = []
while not generator.is_done():
    generator.generate_next_token()
    out.append(generator.get_next_tokens()[0])
print(len(out), tokenizer.decode(out))
assert "labkit" not in sys.modules
del generator, params, tokenizer, model
"""


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_build_runs_in_a_plain_genai_script(tiny_builds, precision):
    done = subprocess.run([sys.executable, "-c", PLAIN_SCRIPT, str(tiny_builds[precision].path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, text = done.stdout.split(" ", 1)
    assert int(count) > 0 and text.strip()


@pytest.mark.parametrize("precision", ["fp16", "int4"])
def test_directml_builds_are_valid_graphs_that_select_directml(tiny_dir, precision):
    """Running needs Windows + onnxruntime-genai-directml; here: the builder's graph and config."""
    import onnxruntime

    built = build.build(tiny_dir, precision, "dml", progress=False)
    decoder = json.loads((built.path / "genai_config.json").read_text())["model"]["decoder"]
    assert decoder["session_options"]["provider_options"] == [{"dml": {}}]
    graph = onnx.load(str(built.path / "model.onnx"), load_external_data=False).graph
    assert ("MatMulNBits" in {n.op_type for n in graph.node}) == (precision == "int4")
    assert graph.input[0].name == "input_ids"
    # ONNX Runtime on CPU loads the whole graph: every node, type and external weight is well formed.
    session = onnxruntime.InferenceSession(str(built.path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()][:3] == ["input_ids", "attention_mask", "position_ids"]


def test_laptop_profile_refuses_a_build_that_does_not_fit(monkeypatch, tmp_path):
    """Judged against available memory, with the total shown, before any building starts."""
    from labkit import build

    need = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini"))["peak_rss_bytes"] / 1e9
    low_memory(monkeypatch, round(need - 1, 1), 16)                  # a gigabyte short of the measured peak
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    folder = checkpoint_folder(tmp_path, "ckpt", shadow.shadow_config("phi-3.5-mini"))
    monkeypatch.setattr(build, "_run_builder", lambda *a, **k: pytest.fail("the builder started"))
    with pytest.raises(build.BuildError, match=rf"needs about {need:.1f} GB.*{need - 1:.1f} GB available of 16\.0 GB"):
        build.build(folder, "int4", progress=False)
    assert not any(p.name.startswith("ckpt-int4") for p in build.builds_root().iterdir())


def test_each_build_gives_the_builder_a_cache_folder_of_its_own(tiny_dir, tmp_path, monkeypatch):
    """The builder removes its cache folder when it ends empty: a shared one vanished under a concurrent build."""
    import onnxruntime_genai.models.builder as builder

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    seen = []

    def fake_create_model(model_name, input_path, output_dir, precision, ep, cache_dir, **extra):
        seen.append(cache_dir)
        assert Path(cache_dir).is_dir()
        raise RuntimeError("stop here")

    monkeypatch.setattr(builder, "create_model", fake_create_model)
    for precision in ("int4", "fp32"):
        with pytest.raises(build.BuildError, match="stop here"):
            build.build(tiny_dir, precision, progress=False)
    assert len(set(seen)) == 2, "two builds, two cache folders"
    assert not any(Path(c).exists() for c in seen), "each removed after its build"


def test_a_full_disk_does_not_hide_the_build_error_behind_the_log(monkeypatch):
    """On a full disk the log's last write fails when it is closed; the error the user sees is the build's."""
    class FullDiskLog:
        def open(self, mode, encoding=None):
            return self

        def write(self, text):
            return len(text)

        def close(self):
            raise OSError(28, "No space left on device")

    def failing_builder(*args):
        raise build.BuildError("the build's own error")

    monkeypatch.setattr(build, "_run_builder", failing_builder)
    with pytest.raises(build.BuildError, match="the build's own error"):
        build._run_logged(Path("m"), Path("out"), build.BuildOptions(), {}, FullDiskLog(), False)


# ------------------------------------------------------------------ the laptop profile's INT4
def test_the_laptop_int4_is_valid_and_keeps_the_int4_name(monkeypatch):
    from labkit.core.profiles import PROFILES

    made = []
    monkeypatch.setattr(build, "build", lambda model, precision, ep, **kw: made.append((precision, kw)) or precision)
    builds = build.build_all("tiny", ["int4", "int8"], "cpu", [{"block_size": 32}],
                             quantized=PROFILES["laptop"].quantized)
    assert list(builds) == ["int4", "int8", "int4-b32"], "the profile's INT4 is lab 01's `int4` row"
    assert made[0][1]["block_size"] == 128 and made[0][1]["accuracy_level"] == 4
    assert made[0][1]["extra"] == {"prune_lm_head": "true"} and made[1][1] == made[0][1], "INT8 too"
    assert made[2][1]["block_size"] == 32 and not made[2][1]["extra"], "a variant has its own options only"
    cli = build.BuildOptions("int4", **PROFILES["laptop"].quantized).cli("m", "o")
    assert "int4_block_size=128 int4_accuracy_level=4" in cli and "prune_lm_head=true" in cli


def test_the_int8_rows_command_line_builds_what_the_row_built(tiny_dir, tmp_path, monkeypatch):
    """Lab 01's `cli` column for the laptop's INT8: labkit's own build command, with every option, lands on the
    same cached build (the same cache key), and prints it."""
    from labkit.core.profiles import PROFILES

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    made = build.build("tiny", "int8", progress=False, **PROFILES["laptop"].quantized)
    line = made.options.cli("tiny", "int8").split("   #")[0]
    assert "--block-size 128 --accuracy-level 4 --extra-options prune_lm_head=true" in line
    done = subprocess.run([sys.executable, *shlex.split(line)[1:], "--json"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, LABKIT_CACHE=str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["cached"] is True
    assert build.prunes_lm_head(made.path)
    bad = subprocess.run([sys.executable, "-m", "labkit", "build", "tiny", "--extra-options", "prune_lm_head"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "write each as KEY=VALUE, e.g. prune_lm_head=true" in bad.stdout + bad.stderr


def test_a_last_position_build_is_scored_on_every_position_of_the_same_weights(tiny_dir, tiny_builds):
    """prune_lm_head: generation unchanged, and perplexity (which needs every position's logits) reads a view of
    the same weights: the same value as the unpruned build's, with nothing copied and nothing left behind."""
    pruned = build.build("tiny", "int4", extra={"prune_lm_head": "true"}, progress=False)
    assert build.prunes_lm_head(pruned.path) and not build.prunes_lm_head(tiny_builds["int4"].path)
    with build.every_position_logits(pruned.path) as view:
        data = view / "model.onnx.data"
        assert data.stat().st_ino == (pruned.path / "model.onnx.data").stat().st_ino or data.is_symlink()
        assert not build.prunes_lm_head(view)
    assert not view.exists()
    assert bench.perplexity(pruned.path) == pytest.approx(bench.perplexity(tiny_builds["int4"].path), rel=1e-6)
    pruned_tokens = bench._greedy_outputs(pruned.path)
    assert pruned_tokens == bench._greedy_outputs(tiny_builds["int4"].path)
    assert cache.verify(pruned.path) is None      # the cached build is untouched by its scoring view
