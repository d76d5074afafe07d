"""Quantize the model builder's MatMuls one at a time, so an INT4 build of Phi-3.5-mini fits a laptop.

The pinned builder (onnxruntime-genai 0.12.2, `builders/base.py`) makes INT4 like this: it builds
the whole graph with float weights (lazy casts of the loaded torch tensors), then `to_int4()`
serialises it with `ir.to_proto(model)` — every weight materialised as fp32 in one protobuf, 15 GB
for 3.8B parameters — and runs ONNX Runtime's `MatMulNBitsQuantizer` over that copy while the
torch weights are still alive. Measured on shallow shadows: ≈ 1.2 GB of RAM per Phi-3.5 layer,
≈ 40 GB for all 32.

`_quantize_one_by_one` does the same work in a different order: for each MatMul with a constant
weight it makes a one-node model holding just that weight in fp32, runs the very same
`MatMulNBitsQuantizer` (same block size, symmetry, accuracy level, algorithm, excluded nodes) on
it, splices the resulting MatMulNBits node and its initializers into the graph, and drops the float
weight — which also releases the torch tensor the builder's lazy cast was holding. Peak memory is
then the loaded bf16 checkpoint plus one weight in fp32, and falls as the build goes on. A weight over 256 MiB
in fp32 is cast and quantized in column slices and the results joined (a protobuf message holds less than
2 GiB, and Phi-4-mini's LM head is 2.46 GB): the same bytes, never the whole fp32 copy at once.

Same graph, same weights bit for bit (`tests/test_lean.py` compares every node and initializer with
the builder's own `to_int4` on the tiny and bench models); only the order of initializers in
`model.onnx.data` differs. Configurations whose quantizer is not per-weight (QDQ format, GPTQ with
calibration data, quantized Gather for tied embeddings) keep the builder's own `to_int4`.

`patched_builder()` installs it for the duration of a build; `labkit.build` always uses it.
"""

from __future__ import annotations

import contextlib

_PER_WEIGHT_ALGORITHMS = ("DEFAULT", "RTN", "k_quant")
_RELEASE_EVERY_BYTES = 64 * 2**20


def supports(quant_attrs: dict) -> bool:
    """True when the builder's INT4 settings quantize each weight on its own (so one-by-one is exact). Lab 01."""
    int4 = quant_attrs["int4"]
    algo = int4.get("algo_config")
    algorithm = getattr(algo, "algorithm", "DEFAULT") if algo is not None else "DEFAULT"
    op_types = tuple(int4.get("op_types_to_quantize") or ("MatMul",))
    return not quant_attrs.get("use_qdq") and algorithm in _PER_WEIGHT_ALGORITHMS and op_types == ("MatMul",)


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS only grows)."""
    import ctypes
    import gc
    import sys

    gc.collect()   # the quantizer's small model sits in reference cycles that hold its fp32 weight
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _one_node_model(node, name: str, array, elem_type: int, opset_imports: dict):
    """A ModelProto with only `node` (a MatMul) and its weight `array` as the initializer `name`, in the graph's
    float type (fp32 on CPU, fp16 for DirectML/CUDA): the quantizer keeps the scales in the weight's type."""
    import onnx
    import onnx_ir as ir

    x = node.inputs[0]
    inputs = [onnx.helper.make_tensor_value_info(x.name, elem_type, None)]
    outputs = [onnx.helper.make_tensor_value_info(node.outputs[0].name, elem_type, None)]
    proto_node = onnx.helper.make_node("MatMul", [x.name, name], [node.outputs[0].name], name=node.name)
    initializer = ir.serde.serialize_tensor(ir.Tensor(array, name=name))
    graph = onnx.helper.make_graph([proto_node], "one_matmul", inputs, outputs, [initializer])
    opsets = [onnx.helper.make_opsetid(domain, version) for domain, version in opset_imports.items()]
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=10)


# A protobuf message holds less than 2 GiB: a weight bigger than this is quantized in column slices, each read from
# the checkpoint's tensor on its own. Phi-4-mini's LM head (3072 x 200,064) is 2.46 GB in fp32.
_SLICE_BYTES = 256 * 2**20


def _quantized(node, weight, opsets: dict, make_quantizer, source=None):
    """The quantized one-node model (an ir.Model) of `node` and its weight, and the fp32 bytes it held.

    MatMulNBits quantizes each output column on its own (blocks run along K, the input dimension), and stores
    its weight, scales and zero points column-major (N first): quantizing column slices and joining the results
    along the first axis is the same as quantizing the whole weight at once. `source`: (torch tensor, ONNX type)
    the builder's lazy cast reads, so that a big weight is cast one slice at a time, never whole."""
    import math

    import numpy as np
    import onnx_ir as ir

    tensor = weight.const_value
    elem_type = tensor.dtype.value        # ir.DataType values are onnx.TensorProto's
    dims = [int(d) for d in tensor.shape]
    nbytes = int(math.prod(dims) * tensor.dtype.itemsize)
    columns = dims[-1]
    if nbytes <= _SLICE_BYTES or source is None:
        array = tensor.numpy()

        def read(first, last):
            return array if (first, last) == (0, columns) else np.ascontiguousarray(array[..., first:last])
    else:
        from onnx_ir.tensor_adapters import to_torch_dtype

        torch_tensor, to = source

        def read(first, last):
            return torch_tensor[..., first:last].to(to_torch_dtype(to)).contiguous().numpy()
    step = max(1, columns * _SLICE_BYTES // nbytes) if nbytes > _SLICE_BYTES else columns
    small, pieces = None, []
    for first in range(0, columns, step):
        quantizer = make_quantizer(_one_node_model(node, weight.name, read(first, first + step), elem_type, opsets))
        quantizer.process()
        model = ir.from_proto(quantizer.model.model)
        del quantizer
        if small is None:
            small = model
        if step < columns:   # copies, so the quantizer's protobuf (and the fp32 slice in it) can go
            pieces.append({name: init.const_value.numpy().copy() for name, init in model.graph.initializers.items()})
        del model
    if pieces:
        for name, init in small.graph.initializers.items():
            joined = np.concatenate([piece[name] for piece in pieces], axis=0)
            init.const_value = ir.Tensor(joined, name=name)
            init.shape = ir.Shape(joined.shape)
        for quantized in small.graph:
            if quantized.op_type == "MatMulNBits":
                quantized.attributes["N"] = ir.AttrInt64("N", columns)
    return small, nbytes


def _splice(graph, old_node, small) -> None:
    """Replace `old_node` in `graph` by the nodes and initializers of the quantized one-node model `small`."""
    import onnx_ir as ir

    values = {old_node.inputs[0].name: old_node.inputs[0]}
    for name, init in small.graph.initializers.items():
        # A copy in numpy: the deserialized tensor would keep the quantizer's whole protobuf arena
        # (fp32 weight included) alive.
        tensor = ir.Tensor(init.const_value.numpy().copy(), name=name)
        value = ir.Value(name=name, shape=init.shape, type=init.type, const_value=tensor)
        graph.register_initializer(value)
        values[name] = value
    old_output = old_node.outputs[0]
    new_nodes = []
    for node in small.graph:
        inputs = [values[v.name] if v is not None else None for v in node.inputs]
        new = ir.Node(node.domain, node.op_type, inputs, attributes=list(node.attributes.values()),
                      num_outputs=len(node.outputs), name=node.name, version=node.version)
        for mine, theirs in zip(new.outputs, node.outputs, strict=True):
            mine.type, mine.shape = theirs.type, theirs.shape
            values[theirs.name] = mine
        new_nodes.append(new)
    final_output = values[old_output.name]
    final_output.type, final_output.shape = old_output.type, old_output.shape
    graph.insert_after(old_node, new_nodes)
    ir.convenience.replace_all_uses_with(old_output, final_output, replace_graph_outputs=True)
    graph.remove(old_node, safe=True)
    for new, theirs in zip(new_nodes, small.graph, strict=True):   # names free only now
        for mine, their_out in zip(new.outputs, theirs.outputs, strict=True):
            mine.name = their_out.name


def _quantize_one_by_one(builder_model, progress=None, bits: int = 4):
    """The builder's `to_int4()`, one MatMul at a time (see the module docstring); returns the ir.Model. Lab 01.

    `bits=8` gives labkit's INT8 build: 8-bit symmetric MatMulNBits with the builder's block size
    and accuracy level, as `MatMulNBitsQuantizer(bits=8)` makes from an FP32 build.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat

    model = builder_model.model
    graph = model.graph
    int4 = builder_model.quant_attrs["int4"]
    excluded = set(int4["nodes_to_exclude"] or ())
    opsets = dict(model.opset_imports)
    targets = [n for n in graph if n.op_type == "MatMul" and n.domain == "" and n.name not in excluded
               and len(n.inputs) == 2 and n.inputs[1] is not None and n.inputs[1].const_value is not None]
    if bits == 8:
        def make_quantizer(one_node):
            return MatMulNBitsQuantizer(one_node, bits=8, block_size=int4["qdq_block_size"], is_symmetric=True,
                                        accuracy_level=int4["accuracy_level"])
    else:
        def make_quantizer(one_node):
            return MatMulNBitsQuantizer(
                one_node, block_size=int4["qdq_block_size"], is_symmetric=int4["is_symmetric"],
                accuracy_level=int4["accuracy_level"], nodes_to_exclude=int4["nodes_to_exclude"],
                quant_format=QuantFormat.QOperator, op_types_to_quantize=int4["op_types_to_quantize"],
                algo_config=int4["algo_config"])
    sources = getattr(builder_model, "_labkit_sources", {})
    unreleased = 0   # fp32 bytes of the weights quantized since the last _release_freed_memory()
    for node in targets:
        weight = node.inputs[1]
        if len(weight.uses()) != 1:   # a shared weight: leave it (the builder never shares MatMul weights)
            continue
        small, nbytes = _quantized(node, weight, opsets, make_quantizer, sources.pop(weight.name, None))
        unreleased += nbytes
        for domain, version in small.opset_imports.items():
            model.opset_imports.setdefault(domain, version)
        _splice(graph, node, small)
        graph.initializers.pop(weight.name)
        weight.const_value = None     # drops the lazy cast and with it the torch tensor
        del small
        # A full collection costs ≈ 0.3 s in a process that has imported torch and transformers: pay it per
        # 64 MiB freed (every weight of Phi-3.5-mini, ≥ 113 MB; once or twice for the tiny model's 21).
        if unreleased >= _RELEASE_EVERY_BYTES:
            _release_freed_memory()
            unreleased = 0

        if progress is not None:
            progress()
    if unreleased:
        _release_freed_memory()
    return model


@contextlib.contextmanager
def patched_builder(progress=None, bits: int = 4):
    """Within this block the model builder quantizes INT4 one MatMul at a time (when exact) and never
    keeps a weight's fp32 copy after writing it. Lab 01.

    With `bits=8`, run the builder with `-p int4` (its quantized path) to get an INT8 build.
    """
    from onnxruntime_genai.models import builder

    # The builder imports its classes as the top-level package `builders` (it puts its own folder
    # on sys.path), so patch the class it actually uses, not onnxruntime_genai.models.builders.base.
    base_model = builder.Model
    original = base_model.to_int4

    def to_int4(self):
        if bits == 8 or supports(self.quant_attrs):
            return _quantize_one_by_one(self, progress, bits)
        return original(self)

    original_initializer = base_model.make_initializer

    def make_initializer(self, tensor, /, name, to=None):
        if to is None or not hasattr(tensor, "to"):
            return original_initializer(self, tensor, name=name, to=to)
        # The builder's lazy cast stores its result back into the closure, so every weight, once
        # written or quantized, stays in memory as fp32 until the build ends (≈ 4 bytes per parameter).
        # Casting afresh on each read writes the same bytes and keeps only the source tensor.
        import onnx_ir as ir
        from onnx_ir.tensor_adapters import TorchTensor, to_torch_dtype

        def cast():
            return TorchTensor(tensor.to(to_torch_dtype(to)), name=name)

        # The source tensor, so that one-by-one quantization can cast a big weight in slices.
        self.__dict__.setdefault("_labkit_sources", {})[name] = (tensor, to)

        ir_tensor = ir.LazyTensor(cast, dtype=to, shape=ir.Shape(tensor.shape), name=name)
        value = self.make_value(name, ir_tensor.dtype, ir_tensor.shape)
        value.const_value = ir_tensor
        self.model.graph.register_initializer(value)

    base_model.to_int4, base_model.make_initializer = to_int4, make_initializer
    try:
        yield
    finally:
        base_model.to_int4, base_model.make_initializer = original, original_initializer
