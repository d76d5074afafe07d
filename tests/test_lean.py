"""labkit.lean: the builder's INT4 quantization one MatMul at a time gives the builder's own output."""

import contextlib

import numpy as np
import onnx
import pytest

from labkit import lean, models


def builder_output(model_dir, out_dir, one_by_one: bool, **extra):
    from onnxruntime_genai.models.builder import create_model

    with lean.patched_builder() if one_by_one else contextlib.nullcontext(), \
            contextlib.redirect_stdout(None):
        create_model(None, str(model_dir), str(out_dir), "int4", "cpu", str(out_dir.parent / "hf-cache"),
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
    assert any(op == "MatMulNBits" for op, *_ in nodes_a) and not any(op == "MatMul" for op, *_ in nodes_a)


@pytest.mark.parametrize("extra", [
    {},                                                                   # the builder's default (lab 01)
    {"int4_algo_config": "rtn", "int4_is_symmetric": "false", "int4_accuracy_level": 1},
    {"int4_algo_config": "k_quant_mixed", "int4_block_size": 16},       # mixed 4/8 bits by node name
])
def test_one_by_one_equals_the_builder_on_tiny(tiny_dir, tmp_path, extra):
    assert_same_model(builder_output(tiny_dir, tmp_path / "builder", False, **extra),
                      builder_output(tiny_dir, tmp_path / "lean", True, **extra))


def test_one_by_one_equals_the_builder_on_bench(tmp_path):
    bench_dir = models.create_tiny("bench", progress=False)
    assert_same_model(builder_output(bench_dir, tmp_path / "builder", False),
                      builder_output(bench_dir, tmp_path / "lean", True))


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

    original = builder.Model.to_int4
    with lean.patched_builder():
        assert builder.Model.to_int4 is not original
    assert builder.Model.to_int4 is original
