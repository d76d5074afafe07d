"""`make bench-peers`: the course's ONNX Runtime GenAI builds against llama.cpp and OpenVINO GenAI. Lab 01.

What an attendee would otherwise put Phi on a laptop with, measured on the same checkpoint (the ~160M-parameter
random-weight `bench` Phi-3), the same prompt (as token ids), the same number of new tokens and threads:

| engine | int4 | int8 | fp32 | extra |
|---|---|---|---|---|
| ONNX Runtime GenAI (`ortgenai`) | the laptop profile's INT4 (blocks of 128) | its INT8 | builder FP32 | `int4_b32` |
| llama.cpp (`llamacpp`, llama-cpp-python) | GGUF Q4_0 | Q8_0 | F32 | `q4_k_m` |
| OpenVINO GenAI (`openvino`) | `--weight-format int4` | int8 | fp32 (f32 inference hint) | – |

Each peer engine runs in its own virtual environment, `.venv-peers/<engine>` (made by `make bench-peers`),
so the course's pins stay untouched: exports and timings run there through `labkit/peer_worker.py`,
which prints one JSON line per measurement. Speeds are medians of `runs` timed runs after a warm-up,
measured in two orders (forward, then backward) and the median of both taken, so neither engine always
runs on a cooler or warmer machine. FP32 greedy tokens are cross-checked: every engine's FP32 answer
must agree with ONNX Runtime GenAI's on the same weights (`fp32_agreement`).

Results go to `runs/bench-peers.json`:
`{"engines": {"<engine>": {"int4"|"int8"|"fp32"|…: {"decode_tok_s", "prefill_tok_s", "size_bytes"}}}, …}`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core import cache, children, paths, sizing
from ..core.errors import LabkitError
from . import kernels

WORKER = Path(__file__).with_name("peer_worker.py")
VENVS = paths.REPO / ".venv-peers"
_LABELS = {"ortgenai": "ONNX Runtime GenAI", "llamacpp": "llama.cpp", "openvino": "OpenVINO GenAI"}
PRECISIONS = ("int4", "int8", "fp32")
# llama.cpp's names for the variants (the "int4" is Q4_0; Q4_K_M is the GGUF most people download).
_GGUF_TYPES = {"int4": "Q4_0", "int8": "Q8_0", "q4_k_m": "Q4_K_M"}
_GGUF_FILE = "bench.gguf"


def label(name: str) -> str:
    """An engine's display name (its key when it has none, as for a test's fake engine). Lab 01."""
    return _LABELS.get(name, name)


def variant_label(engine: str, key: str, short: bool = False) -> str:
    """A variant as the tables (`int4 (Q4_0)`) or, `short`, the summary lines (`Q4_0`) name it. Lab 01."""
    gguf = _GGUF_TYPES.get(key) if engine == "llamacpp" else None
    return key if not gguf else gguf if short or gguf.lower() == key else f"{key} ({gguf})"


class PeerError(LabkitError, RuntimeError):
    """A peer engine that could not be prepared or measured; the message says which and what to do. Lab 01."""


@dataclass
class Variant:
    """One model file or folder of one engine, ready to time. Lab 01."""
    engine: str
    key: str                 # int4 / int8 / fp32 / q4_k_m / int4_b32
    model: Path
    size_bytes: int
    precision: str = ""      # what the worker needs to know (OpenVINO's f32 hint); defaults to key

    def __post_init__(self):
        self.precision = self.precision or self.key


@dataclass
class Engine:
    """A peer: its Python, and how it turns the bench checkpoint into its variants. Lab 01."""
    name: str
    python: Path
    prepare: Callable[[Path, Path, Engine], list[Variant]]
    worker: Path = WORKER
    setup_hint: str = "run `make bench-peers` (it creates .venv-peers/<engine>)"
    env: dict = field(default_factory=dict)

    def check(self) -> None:
        if not Path(self.python).exists():
            raise PeerError(f"{label(self.name)}: {self.python} does not exist; {self.setup_hint}.")


# ------------------------------------------------------------------ running things in an engine's venv
def _run_in(engine: Engine, command: list[str], what: str, timeout: float = 3600) -> str:
    """Run `command` in the engine's environment; its stdout, or PeerError with the tail of its stderr. Lab 01."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout,
                              env=children.python_env(**engine.env), **children.TEXT)
    except subprocess.TimeoutExpired as err:
        raise PeerError(f"{label(engine.name)}: {what} took over {timeout:.0f} s") from err
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise PeerError(f"{label(engine.name)}: {what} failed (exit {done.returncode}):\n{tail}"
                        + _known_crash(engine.name, done.returncode))
    return done.stdout


def _known_crash(engine: str, returncode: int) -> str:
    """What a crash of a peer is known to mean here, or nothing."""
    if engine == "llamacpp" and returncode == -11 and "amx_int8" in sizing.cpu_flags():
        # Measured with llama-cpp-python 0.3.36 (built natively) on an AMX CPU: Q4_0, Q8_0 and Q4_K_M crashed in
        # their first generation with weight repacking on (the default), Q4_0 ran with it off; F32 ran.
        return ("\nThis CPU has AMX, and llama.cpp's AMX kernels crash on some of them (ggml-org/llama.cpp#20824): "
                "its quantized models die at the first token. Run `make bench-peers` on a CPU without AMX; the "
                "course's own labs do not use llama.cpp.")
    return ""


def measure(engine: Engine, variant: Variant, prompt_ids: list[int], new_tokens: int, threads: int,
            runs: int) -> dict:
    """One worker run: the tokens of each timed run and the median prefill / decode speed. Lab 01."""
    request = {"engine": engine.name, "model": str(variant.model), "precision": variant.precision,
               "prompt_ids": prompt_ids, "new_tokens": new_tokens, "threads": threads, "runs": runs}
    out = _run_in(engine, [str(engine.python), str(engine.worker), json.dumps(request)],
                 f"timing {variant.key}")
    try:
        result = json.loads(out.strip().splitlines()[-1])
        missing = {"tokens", "prefill_tok_s", "decode_tok_s"} - set(result)
    except (json.JSONDecodeError, IndexError):
        missing = {"a JSON line"}
    if missing:
        raise PeerError(f"{label(engine.name)} {variant.key}: the worker printed no "
                        f"{', '.join(sorted(missing))}; its output ends with: {out[-300:]!r}")
    if any(len(t) != new_tokens for t in result["tokens"]):
        raise PeerError(f"{label(engine.name)} {variant.key}: asked for {new_tokens} new tokens, "
                        f"got {[len(t) for t in result['tokens']]} (an early end-of-sequence?)")
    return result


# ------------------------------------------------------------------ preparing each engine's variants
def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else paths.dir_size(path)


def _exported(final: Path, make: Callable[[Path], object]) -> Path:
    """`final`, made by `make(tmp)` into a temp folder the first time; reused only when its manifest verifies."""
    with cache.cached_dir(final, label=final.name) as tmp:
        if tmp is not None:
            make(tmp)
    return final


def _prepare_ortgenai(bench_dir: Path, workdir: Path, engine: Engine) -> list[Variant]:
    """The course's own builds of the bench checkpoint (`labkit.build`, cached). Lab 01."""
    from ..core.profiles import PROFILES
    from ..making import build

    out = []
    for precision in PRECISIONS:     # INT4, INT8: as the laptop profile builds them (blocks of 128, last-position
        quantized = PROFILES["laptop"].quantized if precision != "fp32" else {}           # logits)
        made = build.build(bench_dir, precision, progress=False, **quantized)
        out.append(Variant("ortgenai", precision, made.path, made.size_bytes))
    # The builder's own INT4 default, blocks of 32 like GGUF's Q4_0: the like-for-like row.
    made = build.build(bench_dir, "int4", block_size=32, accuracy_level=4, progress=False)
    out.append(Variant("ortgenai", "int4_b32", made.path, made.size_bytes, precision="int4"))
    return out


def _converter_dir(engine: Engine) -> Path:
    """Where `make bench-peers` unpacks llama.cpp's `convert_hf_to_gguf.py` (it ships only in the sdist). Lab 01."""
    return Path(engine.python).parents[1] / "llama.cpp"


def prepare_llamacpp(bench_dir: Path, workdir: Path, engine: Engine) -> list[Variant]:
    """HF → GGUF F32 with llama.cpp's converter, then Q4_0 / Q8_0 / Q4_K_M with its quantizer. Lab 01.

    The bench model carries Phi-3.5's tokenizer files, SentencePiece `tokenizer.model` included: the converter
    reads them as it reads a published Phi-3.5 folder.
    """
    source = _converter_dir(engine)
    if not (source / "convert_hf_to_gguf.py").exists():
        raise PeerError(f"llama.cpp: no converter in {source}; run `make bench-peers` again to unpack it.")
    python, worker = str(engine.python), str(WORKER)
    hf = bench_dir
    f32 = _exported(workdir / "gguf-fp32", lambda tmp: _run_in(engine, [
        python, str(source / "convert_hf_to_gguf.py"), str(hf), "--outtype", "f32", "--outfile",
        str(tmp / _GGUF_FILE), "--model-name", "bench"], "HF → GGUF conversion")) / _GGUF_FILE
    out = [Variant("llamacpp", "fp32", f32, _size(f32))]
    for key, ggml_type in _GGUF_TYPES.items():
        target = _exported(workdir / f"gguf-{key}", lambda tmp, t=ggml_type: _run_in(engine, [
            python, worker, json.dumps({"job": "quantize", "source": str(f32), "out": str(tmp / _GGUF_FILE),
                                        "type": t})], f"quantizing to {t}")) / _GGUF_FILE
        out.append(Variant("llamacpp", key, target, _size(target)))
    return out


def _prepare_openvino(bench_dir: Path, workdir: Path, engine: Engine) -> list[Variant]:
    """`optimum-cli export openvino --weight-format int4|int8|fp32` (int4: group 32, every layer). Lab 01."""
    cli = str(paths.venv_script(Path(engine.python).parents[1], "optimum-cli"))   # beside its python
    out = []
    for precision in PRECISIONS:
        # Group 32 on every layer, like the builder's INT4 blocks and GGUF's Q4_0 (OpenVINO's own default keeps
        # some layers in int8 for models it does not know).
        extra = ["--group-size", "32", "--ratio", "1.0"] if precision == "int4" else []
        target = _exported(workdir / f"openvino-{precision}", lambda tmp, p=precision, x=extra: _run_in(engine, [
            cli, "export", "openvino", "--model", str(bench_dir), "--task", "text-generation-with-past",
            "--weight-format", p, *x, str(tmp)], f"optimum-cli export ({p})"))
        weights = sum(f.stat().st_size for f in target.glob("openvino_model.*"))
        out.append(Variant("openvino", precision, target, weights))
    return out


def default_engines(names=tuple(_LABELS)) -> list[Engine]:
    """The three engines: the course's Python for ONNX Runtime GenAI, `.venv-peers/<engine>` for the others. Lab 01."""
    known = {"ortgenai": Engine("ortgenai", Path(sys.executable), _prepare_ortgenai),
             "llamacpp": Engine("llamacpp", paths.venv_python(VENVS / "llamacpp"), prepare_llamacpp),
             "openvino": Engine("openvino", paths.venv_python(VENVS / "openvino"), _prepare_openvino)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PeerError(f"Unknown engine(s) {unknown}; choose from {', '.join(known)}.")
    return [known[n] for n in names]


# ------------------------------------------------------------------ the suite
def prompt_ids(count: int) -> list[int]:
    """The first `count` token ids of the held-out corpus under the bench model's tokenizer. Lab 01."""
    from transformers import AutoTokenizer

    from ..core import data
    from ..making import models

    tokenizer = AutoTokenizer.from_pretrained(models.create_tiny("bench", progress=False))
    ids = tokenizer(data.corpus("heldout"))["input_ids"][:count]
    if len(ids) < count:
        raise PeerError(f"the held-out corpus has only {len(ids)} tokens; ask for at most that many")
    return ids


def agreement(tokens: list[int], reference: list[int]) -> float:
    """Share of new tokens equal to the reference's, up to the first difference counted as the rest. Lab 01."""
    same = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        same += 1
    return same / len(reference) if reference else 1.0


def run_bench_peers(engines: list[Engine] | None = None, bench_dir: Path | None = None, runs: int = 3,
                    new_tokens: int = 64, prompt_tokens: int = 128, threads: int = 2, orders: int = 2,
                    out: Path | None = None, ids: list[int] | None = None, progress: bool = True,
                    kernel_shape: dict | None = None) -> dict:
    """The `make bench-peers` suite. Prints a table, writes `runs/bench-peers.json`, returns the result. Lab 01."""
    from ..making import models

    if runs < 1 or new_tokens < 2 or threads < 1 or orders not in (1, 2):
        raise PeerError("runs ≥ 1, new_tokens ≥ 2, threads ≥ 1 and orders 1 or 2, please.")
    engines = engines or default_engines()
    for engine in engines:                   # every venv present before any slow export starts
        engine.check()
    bench_dir = Path(bench_dir) if bench_dir else models.create_tiny("bench", progress=False)
    ids = ids or prompt_ids(prompt_tokens)
    workdir = paths.cache_dir() / "peers" / f"{bench_dir.name}-{cache.cache_key(bench_dir)}"
    workdir.mkdir(parents=True, exist_ok=True)

    variants = []
    for engine in engines:
        if progress:
            print(f"preparing {label(engine.name)} …", flush=True)
        variants += [(engine, v) for v in engine.prepare(bench_dir, workdir, engine)]

    samples: dict[tuple[str, str], list[dict]] = {}
    schedule = variants if orders == 1 else variants + variants[::-1]
    for i, (engine, variant) in enumerate(schedule, 1):
        if progress:
            print(f"[{i}/{len(schedule)}] {label(engine.name)} {variant.key}", flush=True)
        samples.setdefault((engine.name, variant.key), []).append(
            measure(engine, variant, ids, new_tokens, threads, runs))

    machine = sizing.machine()
    result = {"settings": {"runs": runs, "orders": orders, "new_tokens": new_tokens, "prompt_tokens": len(ids),
                           "threads": threads, "model": bench_dir.name, "cpu_count": os.cpu_count(),
                           "lm_head_share": lm_head_share(bench_dir)},
              "machine": {key: machine[key] for key in ("cores", "total_ram_bytes", "int8_instructions")},
              "measured_on": time.strftime("%Y-%m-%d"),
              "engines": {}, "versions": {}, "varying_tokens": []}
    tokens = {}
    for engine, variant in variants:
        got = samples[(engine.name, variant.key)]
        runs_tokens = [t for s in got for t in s["tokens"]]
        if any(t != runs_tokens[0] for t in runs_tokens):
            # Random weights leave near-ties between logits, and a quantized kernel that splits its sums across
            # threads may break them differently from run to run: the timing still counts the same number of
            # tokens. FP32 is the cross-check, so there it is an error.
            if variant.key == "fp32":
                raise PeerError(f"{label(engine.name)} fp32: greedy runs gave different tokens, "
                                "so its answers cannot be cross-checked")
            result["varying_tokens"].append(f"{engine.name}/{variant.key}")
        tokens[(engine.name, variant.key)] = runs_tokens[0]
        result["engines"].setdefault(engine.name, {})[variant.key] = {
            "decode_tok_s": round(statistics.median(s["decode_tok_s"] for s in got), 2),
            "prefill_tok_s": round(statistics.median(s["prefill_tok_s"] for s in got), 2),
            "size_bytes": variant.size_bytes}
        result["versions"][engine.name] = got[0].get("version", "?")
    reference = tokens.get(("ortgenai", "fp32"))
    if reference is not None:
        result["fp32_agreement"] = {name: agreement(t, reference) for (name, key), t in tokens.items()
                                    if key == "fp32" and name != "ortgenai"}
    result["ratios"] = ratios(result)
    if progress:
        print("the matrix kernels alone …", flush=True)
    result["kernels"] = kernels.measure(engines, threads, kernel_shape or kernels.SHAPE, _run_in)
    out = Path(out) if out else paths.runs_root() / "bench-peers.json"
    paths.write_json_atomic(out, result)
    if progress:
        print(format_table(result))
        print(f"written to {out}")
    return result


# A peer's variants that count as the same precision (GGUF's Q4_K_M is a 4-bit format too).
_SAME_BITS = {"int4": ("int4", "q4_k_m"), "int8": ("int8",), "fp32": ("fp32",)}


def lm_head_share(model_dir: Path) -> float:
    """The LM head's share of a checkpoint's matrix weights: the part of a prefill that computing the last
    position's logits only (`prune_lm_head`, OpenVINO's exports) saves. Lab 01."""
    from ..making import models

    config = paths.read_json(Path(model_dir) / "config.json", "recreate the checkpoint")
    head = config["vocab_size"] * config["hidden_size"]
    # The embedding is a lookup, not a matrix product; a tied head is a second use of the same matrix.
    matrices = models.describe(Path(model_dir))["parameters"] - (0 if config.get("tie_word_embeddings") else head)
    return round(head / matrices, 4)


def ratios(result: dict) -> dict:
    """Per precision, the course build's decode and prefill speed over the fastest peer's (> 1: the course build
    is faster); each names that peer and variant. Lab 01."""
    engines = result["engines"]
    out = {}
    for precision in PRECISIONS:
        ours = engines.get("ortgenai", {}).get(precision)
        peers = [(name, key, row) for name, rows in engines.items() if name != "ortgenai"
                 for key, row in rows.items() if key in _SAME_BITS[precision]]
        if ours and peers:
            out[precision] = {}
            for speed in ("decode", "prefill"):
                name, key, row = max(peers, key=lambda p: p[2][f"{speed}_tok_s"])
                out[precision][speed] = {"fastest_peer": name, "variant": key,
                                         "ratio": round(ours[f"{speed}_tok_s"] / row[f"{speed}_tok_s"], 3)}
    return out


def rows(result: dict) -> list[dict]:
    """One row per engine and variant, for the tables. Lab 01."""
    order = {key: n for n, key in enumerate(("int4", "int4_b32", "q4_k_m", "int8", "fp32"))}   # each engine alike
    return [{"engine": label(name), "variant": variant_label(name, key), "decode_tok_s": row["decode_tok_s"],
             "prefill_tok_s": row["prefill_tok_s"], "size_mb": round(row["size_bytes"] / 1e6, 1)}
            for name, variants in result["engines"].items()
            for key, row in sorted(variants.items(), key=lambda item: order.get(item[0], len(order)))]


def summary_lines(result: dict) -> list[str]:
    """The course-vs-fastest-peer ratio per precision and the FP32 cross-check, in words. Lab 01."""
    lines = [f"{precision}: ONNX Runtime GenAI {speed}s at {ratio['ratio']:.2f}× the fastest peer "
             f"({label(ratio['fastest_peer'])} {variant_label(ratio['fastest_peer'], ratio['variant'], True)})"
             for precision, speeds in result.get("ratios", {}).items() for speed, ratio in speeds.items()]
    ours = result["engines"].get("ortgenai", {}).get("int4_b32")
    q4_0 = result["engines"].get("llamacpp", {}).get("int4")
    if ours and q4_0:
        decode, prefill = (ours[k] / q4_0[k] for k in ("decode_tok_s", "prefill_tok_s"))
        lines.append(f"int4 with the builder's blocks of 32, like for like with llama.cpp's Q4_0: decode "
                     f"{decode:.2f}×, prefill {prefill:.2f}× (its prefill also computes the LM head at every position)")
    if share := result["settings"].get("lm_head_share"):   # llama.cpp computes logits only where they are asked for
        lines.append(f"the LM head is {share:.0%} of this model's matrix weights: the course's int4 and int8, "
                     "OpenVINO's exports and llama.cpp compute it for the prompt's last position only, the course's "
                     "int4_b32 and fp32 at every one")
    ours, theirs = (result["engines"].get(name, {}).get("fp32") for name in ("ortgenai", "openvino"))
    if ours and theirs and theirs["size_bytes"] < 0.6 * ours["size_bytes"]:
        # optimum-intel keeps the checkpoint's bfloat16 weights as they are (computing in f32)
        lines.append(f"OpenVINO GenAI's fp32 folder is {theirs['size_bytes'] / 1e6:.0f} MB against "
                     f"{ours['size_bytes'] / 1e6:.0f} MB: it keeps the checkpoint's bfloat16 weights, so its fp32 "
                     "decode reads half the bytes (not like for like)")
    lines += kernels.lines(result, label)
    lines += [f"fp32 greedy tokens, {label(name)} vs ONNX Runtime GenAI: {share:.0%} agree"
              for name, share in result.get("fp32_agreement", {}).items()]
    if result.get("varying_tokens"):
        lines.append(f"greedy tokens varied between runs (near-ties of random weights): "
                     f"{', '.join(result['varying_tokens'])}")
    return lines


def format_table(result: dict) -> str:
    """The printed table of `make bench-peers`, then `summary_lines`. Lab 01."""
    lines = [f"{'engine':<20} {'variant':<12} {'decode tok/s':>12} {'prefill tok/s':>13} {'size MB':>8}"]
    lines += [f"{r['engine']:<20} {r['variant']:<12} {r['decode_tok_s']:>12.1f} {r['prefill_tok_s']:>13.1f} "
              f"{r['size_mb']:>8.1f}" for r in rows(result)]
    return "\n".join(lines + summary_lines(result))


REFERENCE = paths.REPO / "docs" / "measured" / "bench-peers.json"   # `make bench-peers-reference` writes it


def read(path: str | Path | None = None, reference: bool = True) -> dict | None:
    """The results of the last `make bench-peers` (`runs/bench-peers.json`); without one, the course's reference
    run (`docs/measured/bench-peers.json`, marked `"reference": True`), or None. Lab 01 (and lab 05).

    The peers' environments take 15-20 minutes to install, so a course run shows a measured comparison anyway."""
    path = Path(path) if path else paths.runs_root() / "bench-peers.json"
    return paths.read_run_or_reference(path, REFERENCE if reference else None, "run `make bench-peers` again")


def source_line(result: dict) -> str:
    """Where a bench-peers result comes from, in one line for the labs: which CPU class and when. Lab 01."""
    machine = result.get("machine", {})
    when = result.get("measured_on", "on an unknown date")
    where = (f"{machine.get('cores', result['settings'].get('cpu_count', '?'))} cores, int8 instructions: "
             f"{machine.get('int8_instructions', 'not recorded')}, measured {when}")
    if result.get("reference"):
        return (f"The course's reference run of `make bench-peers` ({where}); running it here measures this machine "
                "and replaces it. Prefill ratios hold only between CPUs with the same int8 instructions.")
    return f"Measured on this machine by `make bench-peers` ({where})."


def table(result: dict):
    """The results as a pandas table. Lab 01 and the report (lab 05)."""
    import pandas as pd

    return pd.DataFrame(rows(result)).set_index(["engine", "variant"])


def plot(result: dict):
    """Decode tokens/second per engine, grouped by precision. Lab 01 and the report (lab 05)."""
    import matplotlib.pyplot as plt

    keys = [k for k in ("int4", "int4_b32", "q4_k_m", "int8", "fp32")
            if any(k in v for v in result["engines"].values())]
    names = list(result["engines"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [result["engines"][name].get(k, {}).get("decode_tok_s", 0) for k in keys]
        ax.bar([x + i * width for x in range(len(keys))], values, width, label=label(name))
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(keys))], keys)
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"Same checkpoint, {result['settings']['threads']} threads, "
                 f"{result['settings']['new_tokens']} greedy tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
