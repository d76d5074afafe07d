"""Time one engine on one model folder; run as a script by that engine's own Python. Lab 01 (`make bench-peers`).

    .venv-peers/llamacpp/bin/python labkit/peer_worker.py '{"engine": "llamacpp", "model": "…/q4_0.gguf", …}'

Each peer engine lives in its own virtual environment (`.venv-peers/<engine>`), where the course's packages
are not installed, so this file imports only the engine it is asked for; labkit only for ONNX Runtime GenAI,
which runs in the course's environment. It prints one
JSON line: the new tokens of every run (greedy, so they must not change), the median prefill and decode
tokens/second over the timed runs after one warm-up, and the engine's version.

Every engine gets the same prompt as token ids (not text), so tokenizers cannot make the runs differ:
the bench checkpoint has random weights and each export keeps the token ids of its vocabulary.
Prefill time is to the first new token; decode tokens/second counts the remaining new tokens.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def _ortgenai(request: dict):
    # This engine runs in the course's own environment: the bare loop `make bench` times (labkit.bench).
    import onnxruntime_genai as og

    from labkit.runtime.loop import greedy_tokens

    config = og.Config(request["model"])
    threads = {"intra_op_num_threads": request["threads"], "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
    model = og.Model(config)

    def run():
        return greedy_tokens(model, request["prompt_ids"], request["new_tokens"], exact=True)

    return run, og.__version__


def _llamacpp(request: dict):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=request["model"], n_ctx=len(request["prompt_ids"]) + request["new_tokens"] + 8,
                          n_threads=request["threads"], n_threads_batch=request["threads"], n_batch=512,
                          logits_all=False, verbose=False)
    prompt, new = request["prompt_ids"], request["new_tokens"]

    def run():
        llm.reset()
        started = time.perf_counter()
        llm.eval(prompt)
        token = int(llm.sample(temp=0.0))          # greedy: temperature 0 is argmax
        first = time.perf_counter()
        tokens = [token]
        while len(tokens) < new:
            llm.eval([token])
            token = int(llm.sample(temp=0.0))
            tokens.append(token)
        return tokens, first - started, time.perf_counter() - first

    return run, llama_cpp.__version__


def _openvino(request: dict):
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    # SDPA: the stateful pipeline. The default (paged attention) caches prompt prefixes, so from the second run
    # on it would skip the prefill that ONNX Runtime GenAI and llama.cpp redo every run.
    properties = {"INFERENCE_NUM_THREADS": request["threads"], "ATTENTION_BACKEND": "SDPA"}
    if request.get("precision") == "fp32":
        # The CPU plugin computes in bf16 by default where the processor has it: ask for a true FP32 row.
        properties.update(INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    pipe = ov_genai.LLMPipeline(request["model"], "CPU", **properties)
    prompt, new = request["prompt_ids"], request["new_tokens"]
    ids = ov.Tensor(np.array([prompt], dtype=np.int64))
    mask = ov.Tensor(np.ones((1, len(prompt)), dtype=np.int64))
    first_only = ov_genai.GenerationConfig(max_new_tokens=1, min_new_tokens=1, do_sample=False)
    config = ov_genai.GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False)
    inputs = ov_genai.TokenizedInputs(ids, mask)

    def run():
        # Prefill is timed as a one-token generation, decode as what a full generation takes beyond it: the
        # same split as the other engines, without relying on each pipeline's own metrics.
        started = time.perf_counter()
        pipe.generate(inputs, first_only)
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        result = pipe.generate(inputs, config)
        total = time.perf_counter() - started
        return [int(t) for t in result.tokens[0]], prefill, max(total - prefill, 1e-9)

    return run, ov_genai.__version__


_ENGINES = {"ortgenai": _ortgenai, "llamacpp": _llamacpp, "openvino": _openvino}


def _quantize_gguf(request: dict) -> dict:
    """llama.cpp's quantizer through llama-cpp-python (`llama_model_quantize`). Lab 01 (`make bench-peers`)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{request['type']}")
    code = llama_cpp.llama_model_quantize(request["source"].encode(), request["out"].encode(), params)
    if code != 0:
        raise SystemExit(f"llama_model_quantize returned {code}")
    return {"out": request["out"]}


def _kernels(request: dict) -> dict:
    """The matrix kernels under the table, without a model around them. Lab 01 (`make bench-peers`).

    Prefill-shaped: one `k` x `n` MatMul of `tokens` rows (GFLOP/s). Decode-shaped: one row through a chain of
    `layers` square `k` x `k` MatMuls, more weights than a CPU cache holds (GB/s of weights read, to set against
    the machine's memory bandwidth). Random weights: the speed of these kernels does not depend on the values."""
    import numpy as np

    rng = np.random.default_rng(0)
    k, n, tokens, layers = request["k"], request["n"], request["tokens"], request["layers"]
    make = {"ortgenai": _ort_kernel, "openvino": _openvino_kernel}[request["engine"]]
    target = request.get("target_seconds", 0.3)       # per timed batch; a test asks for less
    out = {"prefill_gflop_s": {}, "decode_gb_s": {}}
    for variant in request["variants"]:
        run, _ = make([(k, n)], variant, request["threads"], rng)
        seconds = _median_seconds(run, rng.standard_normal((tokens, k), dtype=np.float32), target=target)
        out["prefill_gflop_s"][variant] = round(2 * tokens * k * n / seconds / 1e9, 1)
        if variant != "fp32":
            run, weight_bytes = make([(k, k)] * layers, variant, request["threads"], rng)
            seconds = _median_seconds(run, rng.standard_normal((1, k), dtype=np.float32), target=target)
            out["decode_gb_s"][variant] = round(weight_bytes / seconds / 1e9, 2)
    return out


def _median_seconds(run, a, batches: int = 5, target: float = 0.3) -> float:
    run(a)
    started = time.perf_counter()
    run(a)
    repeats = max(1, int(target / max(time.perf_counter() - started, 1e-6)))
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(repeats):
            run(a)
        times.append((time.perf_counter() - started) / repeats)
    return statistics.median(times)


def _ort_kernel(shapes, variant: str, threads: int, rng):
    """MatMulNBits (`int4`: blocks of 128, `int4_b32`; int8 compute, accuracy level 4), MatMul (`fp32`), or
    `int8_qgemm`: the fp32 MatMuls through `quantize_dynamic` (int8 weights per output channel, activations per
    tensor at run time), MLAS's int8 GEMM, as the course's image encoder runs: the yardstick of what int8 compute
    reaches on this CPU."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, weights, x = [], [], "A"
    for i, (k, n) in enumerate(shapes):
        if variant in ("fp32", "int8_qgemm"):
            weights.append(numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32) / k ** 0.5, f"W{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"Y{i}"]))
        else:
            block = 32 if variant == "int4_b32" else 128
            packed = rng.integers(0, 256, size=(n, k // block, block // 2), dtype=np.uint8)
            scales = np.full(n * k // block, (21 * k) ** -0.5, dtype=np.float32)   # keeps a chain's values ~N(0, 1)
            weights += [numpy_helper.from_array(packed, f"B{i}"), numpy_helper.from_array(scales, f"S{i}")]
            nodes.append(helper.make_node("MatMulNBits", [x, f"B{i}", f"S{i}"], [f"Y{i}"], domain="com.microsoft",
                                          K=k, N=n, bits=4, block_size=block, accuracy_level=4))
        x = f"Y{i}"
    rows = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", shapes[0][0]])
    graph = helper.make_graph(nodes, "kernel", [rows],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["M", shapes[-1][1]])], weights)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    if variant == "int8_qgemm":
        model = _quantize_dynamic(model)
        weights = list(model.graph.initializer)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return (lambda a: session.run(None, {"A": a})), sum(numpy_helper.to_array(w).nbytes for w in weights)


def _quantize_dynamic(model):
    """`model` with int8 MatMul weights, quantized as lab 02's image encoder is (`vision_export.quantize_encoder`)."""
    import tempfile
    from pathlib import Path

    import onnx

    from labkit.making.vision_export import quantize_encoder

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, source)
        quantize_encoder(source, target)
        return onnx.load(target)


def _openvino_kernel(shapes, variant: str, threads: int, rng):
    """The same MatMuls compressed by NNCF as `optimum-cli export openvino --weight-format int4 --group-size 32`
    does (asymmetric int4, groups of 32)."""
    import nncf
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    a = ops.parameter([-1, shapes[0][0]], ov.Type.f32, name="A")
    x = a
    for k, n in shapes:
        x = ops.matmul(x, ops.constant(rng.standard_normal((n, k), dtype=np.float32) / k ** 0.5), False, True)
    model = ov.Model([x], [a], "kernel")
    if variant != "fp32":
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=32, ratio=1.0)
    weight_bytes = sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant")
    request = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
    return (lambda a: request.infer({0: a})), weight_bytes


_JOBS = {"quantize": _quantize_gguf, "kernels": _kernels}


def measure(request: dict) -> dict:
    """Load once, one warm-up run, then `runs` timed runs. Lab 01 (`make bench-peers`)."""
    if request["engine"] not in _ENGINES:
        raise SystemExit(f"unknown engine {request['engine']!r}; known: {', '.join(_ENGINES)}")
    run, version = _ENGINES[request["engine"]](request)
    run()
    tokens, prefills, decodes = [], [], []
    for _ in range(request["runs"]):
        out, prefill, decode = run()
        tokens.append(out)
        prefills.append(len(request["prompt_ids"]) / prefill)
        decodes.append((len(out) - 1) / decode)
    return {"tokens": tokens, "prefill_tok_s": statistics.median(prefills),
            "decode_tok_s": statistics.median(decodes), "version": version}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_JOBS[request["job"]](request) if "job" in request else measure(request)))
