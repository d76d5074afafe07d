"""The int4 matrix kernels under `make bench-peers`' table, on their own. Lab 01.

A model's prefill and decode speed come down to its MatMuls: ONNX Runtime's `MatMulNBits` (int8 compute,
accuracy level 4) and OpenVINO's compressed fully-connected layers (what `optimum-cli export openvino
--weight-format int4 --group-size 32` makes). Timing the kernels alone, in each engine's own environment
(`peer_worker.py`'s `kernels` job), says how much of the table is the kernel and how close decoding can come
to the memory bound on this CPU:

- prefill-shaped: one `k` x `n` MatMul of `tokens` rows, in GFLOP/s (fp32 beside it as the yardstick);
- decode-shaped: one row through `layers` square int4 MatMuls, more weights than a CPU cache holds, in GB/s of
  weights read, against the machine's memory bandwidth (`bench.memory_bandwidth`).
"""

from __future__ import annotations

import json

# Phi-3.5-mini's MLP input width and up-projection, a prompt of 128 tokens; 24 square layers (120 MB of int4) are
# more than a CPU's cache, so one token through them reads its weights from memory as decoding does.
SHAPE = {"k": 3072, "n": 8192, "tokens": 128, "layers": 24}
VARIANTS = {"ortgenai": ["int4", "int4_b32", "int8_qgemm", "fp32"], "openvino": ["int4"]}
_NAMES = {"int4": "int4", "int4_b32": "int4 blocks of 32",
          "int8_qgemm": "int8 GEMM (quantize_dynamic, not the course's INT8)", "fp32": "fp32"}


def measure(engines, threads: int, shape: dict, run_in) -> dict:
    """Each engine's kernels (those in `VARIANTS`) through `run_in(engine, command, what)`, and the machine's
    memory bandwidth. Lab 01."""
    from .bench import memory_bandwidth

    out = {"shape": shape, "memory_read_gb_s": round(memory_bandwidth()["read_gb_s"], 2), "engines": {}}
    for engine in engines:
        if engine.name in VARIANTS:
            request = {"job": "kernels", "engine": engine.name, "threads": threads,
                       "variants": VARIANTS[engine.name], **shape}
            printed = run_in(engine, [str(engine.python), str(engine.worker), json.dumps(request)], "its kernels")
            out["engines"][engine.name] = json.loads(printed.strip().splitlines()[-1])
    return out


def lines(result: dict, label) -> list[str]:
    """A bench-peers result's kernels in words: prefill in GFLOP/s, decode as a share of the memory bound. Lab 01."""
    measured = result.get("kernels")
    if not measured or not measured["engines"]:
        return []
    shape, bound = measured["shape"], measured["memory_read_gb_s"]
    prefill = "; ".join(label(engine) + " " + ", ".join(f"{_NAMES[v]} {speed:.0f}" for v, speed in
                                                        row["prefill_gflop_s"].items())
                        for engine, row in measured["engines"].items())
    decode = "; ".join(f"{label(engine)} {row['decode_gb_s']['int4']:.1f} GB/s "
                       f"({row['decode_gb_s']['int4'] / bound:.2f} of it)"
                       for engine, row in measured["engines"].items() if "int4" in row["decode_gb_s"])
    out = [f"the kernels alone, one {shape['k']}×{shape['n']} MatMul of {shape['tokens']} tokens, GFLOP/s: {prefill}"]
    int8 = measured["engines"].get("ortgenai", {}).get("prefill_gflop_s", {}).get("int8_qgemm")
    if int8:
        shares = ", ".join(f"{label(engine)}'s int4 {row['prefill_gflop_s']['int4'] / int8:.2f} of it"
                           for engine, row in measured["engines"].items() if "int4" in row["prefill_gflop_s"])
        out.append(f"what int8 arithmetic reaches on this CPU, ONNX Runtime's int8 GEMM ({int8:.0f} GFLOP/s, "
                   f"`quantize_dynamic`'s weights, as lab 02's image encoder): {shares}")
    weights_mb = shape["layers"] * shape["k"] ** 2 * (0.5 + 4 / 128) / 1e6      # 4-bit values, a scale per 128
    return out + [f"one token through {shape['layers']} int4 MatMuls of {shape['k']}×{shape['k']} "
                  f"(≈ {weights_mb:.0f} MB), weights read per second against the memory read benchmark of the same "
                  f"run, {bound:.1f} GB/s: {decode}"]
