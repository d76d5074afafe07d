"""labkit.lean: the builder's INT4 quantization one MatMul at a time gives the builder's own output."""

import contextlib

import numpy as np
import onnx
import pytest

from labkit import lean, models


def builder_output(model_dir, out_dir, one_by_one: bool, precision="int4", ep="cpu", **extra):
    from onnxruntime_genai.models.builder import create_model

    with lean.patched_builder() if one_by_one else contextlib.nullcontext(), \
            contextlib.redirect_stdout(None):
        create_model(None, str(model_dir), str(out_dir), precision, ep, str(out_dir.parent / "hf-cache"),
                     **{k: str(v) for k, v in extra.items()})
    model = onnx.load(str(out_dir / "model.onnx"))
    nodes = sorted((n.op_type, n.domain, n.name, tuple(n.input), tuple(n.output),
                    tuple(sorted(onnx.helper.printable_attribute(a) for a in n.attribute))) for n in model.graph.node)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    io = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    return nodes, weights, io, {(o.domain, o.version) for o in model.opset_import}


def assert_same_model(a, b):
    (nodes_a, weights_a, io_a, opsets_a), (nodes_b, weights_b, io_b, opsets_b) = a, b
    assert nodes_a == nodes_b, "the graphs differ"
    assert io_a == io_b and opsets_a == opsets_b
    assert sorted(weights_a) == sorted(weights_b), "different initializers"
    for name, value in weights_a.items():
        assert value.dtype == weights_b[name].dtype and np.array_equal(value, weights_b[name]), name


def assert_quantized(model):
    nodes = model[0]
    assert any(op == "MatMulNBits" for op, *_ in nodes) and not any(op == "MatMul" for op, *_ in nodes)


@pytest.mark.parametrize("extra", [
    {},                                                                   # the builder's default (lab 01)
    {"int4_algo_config": "rtn", "int4_is_symmetric": "false", "int4_accuracy_level": 1},
    {"int4_algo_config": "k_quant_mixed", "int4_block_size": 16},       # mixed 4/8 bits by node name
])
def test_one_by_one_equals_the_builder_on_tiny(tiny_dir, tmp_path, extra):
    lean_model = builder_output(tiny_dir, tmp_path / "lean", True, **extra)
    assert_same_model(builder_output(tiny_dir, tmp_path / "builder", False, **extra), lean_model)
    assert_quantized(lean_model)


@pytest.mark.parametrize("extra", [{}, {"int4_algo_config": "rtn", "int4_is_symmetric": "false"}])
def test_weights_quantized_in_column_slices_equal_the_builder(tiny_dir, tmp_path, monkeypatch, extra):
    """A weight over a protobuf's 2 GiB (Phi-4-mini's LM head) is quantized in column slices and joined: with slices
    of 64 KiB every tiny weight is split (the LM head into dozens) and the model is still the builder's own."""
    monkeypatch.setattr(lean, "_SLICE_BYTES", 64 * 1024)
    lean_model = builder_output(tiny_dir, tmp_path / "lean", True, **extra)
    assert_same_model(builder_output(tiny_dir, tmp_path / "builder", False, **extra), lean_model)


def test_one_by_one_equals_the_builder_on_bench(tmp_path):
    bench_dir = models.create_tiny("bench", progress=False)
    assert_same_model(builder_output(bench_dir, tmp_path / "builder", False),
                      builder_output(bench_dir, tmp_path / "lean", True))


def test_fp16_graphs_keep_fp16_scales(tiny_dir, tmp_path):
    """DirectML (and CUDA) INT4: the graph computes in fp16, so the quantized scales must stay fp16."""
    lean_model = builder_output(tiny_dir, tmp_path / "lean", True, ep="dml")
    assert_same_model(builder_output(tiny_dir, tmp_path / "builder", False, ep="dml"), lean_model)
    assert any(w.dtype == np.float16 for name, w in lean_model[1].items() if name.endswith("_scales"))


def test_fp32_build_is_unchanged_by_the_patch(tiny_dir, tmp_path):
    assert_same_model(builder_output(tiny_dir, tmp_path / "builder", False, "fp32"),
                      builder_output(tiny_dir, tmp_path / "lean", True, "fp32"))


def test_non_per_weight_settings_keep_the_builders_path():
    base = {"int4": {"algo_config": None, "op_types_to_quantize": ("MatMul",)}, "use_qdq": False}
    assert lean.supports(base)
    assert not lean.supports({**base, "use_qdq": True})
    assert not lean.supports({**base, "int4": {"algo_config": None, "op_types_to_quantize": ("MatMul", "Gather")}})

    class Gptq:
        algorithm = "GPTQ"
    assert not lean.supports({**base, "int4": {"algo_config": Gptq(), "op_types_to_quantize": ("MatMul",)}})


def test_patch_is_undone_after_the_block():
    from onnxruntime_genai.models import builder

    original = builder.Model.to_int4, builder.Model.make_initializer
    with lean.patched_builder():
        assert builder.Model.to_int4 is not original[0] and builder.Model.make_initializer is not original[1]
    assert (builder.Model.to_int4, builder.Model.make_initializer) == original


def test_int8_one_by_one_equals_fp32_build_plus_quantizer(tiny_dir, tmp_path):
    """labkit's INT8 build (builder's quantized path, 8-bit) == the FP32 build + MatMulNBitsQuantizer(bits=8)."""
    import json

    from onnxruntime_genai.models.builder import create_model

    from labkit import build

    reference = tmp_path / "fp32"
    with contextlib.redirect_stdout(None):
        create_model(None, str(tiny_dir), str(reference), "fp32", "cpu", str(tmp_path / "hf-cache"))
    build.quantize_int8(reference, block_size=32, accuracy_level=4)
    lean_dir = tmp_path / "lean"
    with lean.patched_builder(bits=8), contextlib.redirect_stdout(None):
        create_model(None, str(tiny_dir), str(lean_dir), "int4", "cpu", str(tmp_path / "hf-cache"),
                     int4_block_size="32", int4_accuracy_level="4")

    def contents(folder):
        model = onnx.load(str(folder / "model.onnx"))
        nodes = sorted((n.op_type, n.name, tuple(n.input), tuple(n.output),
                        tuple(sorted(onnx.helper.printable_attribute(a) for a in n.attribute)))
                       for n in model.graph.node)
        weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        return nodes, weights, json.loads((folder / "genai_config.json").read_text())

    (nodes_a, weights_a, config_a), (nodes_b, weights_b, config_b) = contents(reference), contents(lean_dir)
    assert nodes_a == nodes_b
    assert any("bits = 8" in attr for node in nodes_b for attr in node[4])
    assert sorted(weights_a) == sorted(weights_b)
    for name, value in weights_a.items():
        assert value.dtype == weights_b[name].dtype and np.array_equal(value, weights_b[name]), name
    assert config_a == config_b
