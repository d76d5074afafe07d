"""The memory-bandwidth bound `make bench-scale` holds each decode to, and each build's fraction of it. Lab 01.

Decode reads every weight once per token, so tokens/s times bytes per token cannot exceed the memory's read
bandwidth. The bound is the read benchmark's GB/s (`bench.memory_bandwidth`), or the fastest weight stream a
decode of the same run reached where that is higher: then the benchmark fell short (an AVX-512 EPYC's FP32
build read 43 GB/s a token where numpy's read reached 31), and that build sits at 1.00 by definition.
"""

from __future__ import annotations


def with_bound(result: dict) -> dict:
    """Each build's decode as a fraction of the memory-bandwidth bound, in place (the module says which). Lab 01."""
    rows = {p.upper(): result[p] for p in ("int4", "int8", "fp32") if "decode_tok_s" in result.get(p, {})}
    phi4 = result.get("phi-4-mini", {})
    rows.update({name: row for name, row in (("Phi-4-mini INT4", phi4.get("int4")),
                                             ("INT4 (Phi-4-mini's run)", phi4.get("phi35_int4_same_run")))
                 if row and "decode_tok_s" in row})
    bandwidth = result["memory_bandwidth_gb_s"]
    streams = {name: row["decode_tok_s"] * row["weight_bytes_per_token"] / 1e9 for name, row in rows.items()}
    fastest = max(streams, key=streams.get, default=None)
    bandwidth["fastest_decode_gb_s"], bandwidth["fastest_decode"] = streams.get(fastest, 0.0), fastest
    bandwidth["bound_gb_s"] = max(bandwidth["read_gb_s"], bandwidth["fastest_decode_gb_s"])
    for row in rows.values():
        row["bandwidth_bound_tok_s"] = bandwidth["bound_gb_s"] * 1e9 / row["weight_bytes_per_token"]
        row["bandwidth_fraction"] = row["decode_tok_s"] / row["bandwidth_bound_tok_s"]
    return result


def bound_line(result: dict) -> str:
    """What "of bound" is measured against, in one line. Lab 01."""
    bandwidth = result["memory_bandwidth_gb_s"]
    read, bound, name = bandwidth["read_gb_s"], bandwidth.get("bound_gb_s", 0), bandwidth.get("fastest_decode")
    return (f"the {name} build's decode read its weights at {bound:.1f} GB/s, faster than the read benchmark's "
            f"{read:.1f} GB/s, so {bound:.1f} GB/s is the bound and {name} decodes at 1.00 of it by definition"
            if bound > read else f"the read benchmark's {read:.1f} GB/s")
