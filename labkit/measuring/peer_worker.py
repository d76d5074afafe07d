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


_JOBS = {"quantize": _quantize_gguf}


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
