"""AWQ on CPU with llmcompressor, exported as a float checkpoint the model builder reads. Lab 03.

Why not Olive's own AWQ (`olive quantize --algorithm awq`): it runs autoawq, which is CUDA-only
("Please use GPU to run AWQ quantization") and archived. llmcompressor's `AWQModifier` does the
same algorithm in plain PyTorch and runs on CPU after one patch (below).

Why a float export: neither the pinned model builder nor Olive reads llmcompressor's compressed-tensors INT4
checkpoint. So we write AWQ's result as an ordinary float checkpoint: every quantized Linear holds its *dequantized*
INT4 weights (AWQ's scales folded in). The builder's RTN INT4 with the same group size and asymmetric levels then
lands on exactly AWQ's grid, and the fine-tuning step trains on the quantized-then-dequantized model, as the Olive
lab that fine-tunes Phi-3.5 on travel Q&A does (AWQ, then LoRA).

What AWQ does: a few weight channels matter far more than the rest — those that meet large activations. Rounding
them costs the most. AWQ measures activation magnitudes on calibration text, searches a per-channel scale s that
multiplies those weight columns (and divides the activations by s, through the preceding norm), so that rounding
hurts them less; the model's function is unchanged before rounding.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..core import allocator, cache, children, data, paths
from ..core.errors import InputError
from ..making import models
from ..measuring import memwatch
from .bf16_linear import install_for

# llmcompressor's console log, set up when it is first imported (lab 03 imports it after labkit): at its INFO
# level it warns "No accelerator available! Compressing model on CPU instead" three times on import, which on the
# course's CPU profile is the plan, not news. Errors still show; LLM_COMPRESSOR_LOG_LEVEL=INFO brings all back.
os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")

_AWQ_FORMAT = "labkit-awq-v3"   # bump when the output of the same inputs changes
DTYPES = ("float32", "bfloat16")   # what AWQ and the LoRA fine-tune (labkit.training.olive) load and train in
_COMPARE_FORMAT = "labkit-rtn-vs-awq-v1"   # bump when compare_with_rtn measures differently


def _patch_llmcompressor_for_cpu() -> None:
    """llmcompressor pins cached activations for fast host-to-GPU copies; with no accelerator,
    `Tensor.pin_memory()` raises "Cannot access accelerator device". On CPU there is nothing to pin."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.cuda.is_available() and not getattr(IntermediatesCache, "_labkit_cpu", False):
        IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
        IntermediatesCache._labkit_cpu = True


def _quiet_transformers() -> None:
    """No "Loading weights" / "Writing model shards" bars: a lab cell shows one line per step, not per file."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def travel_chat_texts(model: str | Path, rows: list[dict] | None = None) -> list[str]:
    """The travel eval pairs (or `rows`) in the chat format of `model`'s tokenizer. Lab 03."""
    from transformers import AutoTokenizer

    model_dir = models.resolve_model(model)
    return data.chat_texts(AutoTokenizer.from_pretrained(model_dir), rows or data.travel("eval"))


def awq_recipe(group_size: int = 32, n_grid: int = 20) -> list:
    """llmcompressor's AWQ recipe: search per-channel scales (`n_grid` candidates per projection), then 4-bit
    asymmetric weights in groups. Lab 03.

    Lab 03 builds the same list in plain sight and passes it to `quantize`.
    """
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    weights = QuantizationArgs(num_bits=4, type="int", symmetric=False, strategy="group", group_size=group_size)
    return [AWQModifier(duo_scaling=True, n_grid=n_grid),
            QuantizationModifier(config_groups={"w4": QuantizationScheme(targets=["Linear"], weights=weights)},
                                 ignore=["lm_head"])]


def recipe_group_size(recipe: list) -> int:
    """The weight group size a recipe quantizes to (the ONNX build must use the same). Lab 03."""
    sizes = {scheme.weights.group_size for modifier in recipe
             for scheme in (getattr(modifier, "config_groups", None) or {}).values() if scheme.weights}
    if len(sizes) != 1:
        raise InputError(f"The recipe must quantize weights with one group size; found {sorted(sizes) or 'none'}. "
                         "Use a QuantizationModifier with one weight scheme (see labkit.awq.awq_recipe).")
    return sizes.pop()


def quantize(model: str | Path = "tiny", recipe: list | None = None, *, group_size: int = 32, samples: int = 128,
             seq_len: int = 128, dtype: str = "float32", in_child: bool = False, force: bool = False) -> Path:
    """Run an llmcompressor AWQ `recipe` (default `awq_recipe(group_size)`) with `oneshot` on travel text. Lab 03.

    Returns a float checkpoint folder holding the dequantized INT4 weights (see module docstring),
    cached by input model + recipe + settings and written atomically. `awq_info.json` inside records
    time and per-layer settings. Lab 03 runs the same steps in plain sight through `AwqStep`. `dtype="bfloat16"`
    loads, calibrates and saves the model in bfloat16: half the memory of float32 (a 3.8B model in 7.6 GB) and, on a
    CPU with bfloat16 instructions, about half the time. `in_child=True` runs it in a Python process of its own
    (`python -m labkit.training.awq`): llmcompressor keeps references to a model it compressed (its patched
    `save_pretrained` and `forward`), so the calling process could never give back that model's memory — 7.6 GB
    for Phi-3.5-mini in bfloat16, which the next step (the fine-tune, in Olive's process) needs.
    """
    step = AwqStep(model, recipe, group_size=group_size, samples=samples, seq_len=seq_len, dtype=dtype)
    if in_child:
        return _quantize_in_child(step, force)

    def make(tmp: Path, log: Path) -> dict:
        net, calibration = step.calibration_inputs()
        names = ", ".join(type(m).__name__ for m in step.recipe)
        print(f"oneshot(model, dataset=<{len(calibration)} travel pairs>, recipe=[{names}], max_seq_length={seq_len}, "
              f"pipeline='sequential', shuffle_calibration_samples=False)   # llmcompressor's log: {paths.shown(log)}")
        with log.open("w", encoding="utf-8") as log_file, cache.captured_output(log_file):
            _oneshot(net, calibration, step.recipe, seq_len)
        return _save_into(tmp, net, step, len(calibration))

    return step.cached(make, force)


class AwqStep:
    """Where one AWQ run's result lives in labkit's cache, and the pieces around llmcompressor's `oneshot`. Lab 03.

    The cache key is taken from the recipe as given, before `oneshot` runs (it fills in the modifiers' fields):

        step = AwqStep("tiny", recipe, samples=128)
        if not step.done:
            net, calibration = step.calibration_inputs()
            oneshot(model=net, dataset=calibration, recipe=recipe, ...)
            step.save(net)
        step.path          # what `quantize` returns for the same inputs
    """

    def __init__(self, model: str | Path = "tiny", recipe: list | None = None, *, group_size: int = 32,
                 samples: int = 128, seq_len: int = 128, dtype: str = "float32"):
        _patch_llmcompressor_for_cpu()
        if dtype not in DTYPES:
            raise InputError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)} (bfloat16 halves the memory).")
        self.recipe = recipe if recipe is not None else awq_recipe(group_size)
        self.group_size = recipe_group_size(self.recipe)
        if self.group_size not in (16, 32, 64, 128, 256):
            raise InputError(f"group_size={self.group_size} is invalid; use 16, 32, 64, 128 or 256 (the builder's "
                             "int4_block_size values), so the ONNX build lands on AWQ's grid.")
        grid = _n_grid(self.recipe)
        if grid is not None and grid < 3:
            raise InputError(f"n_grid={grid}: AWQ's scale search needs at least 3 candidates (llmcompressor's "
                             "duo-scaling grid divides by n_grid - 2); lab 03 uses 20, its full-size recipe 10.")
        self.model_dir, self.samples, self.seq_len, self.dtype = models.resolve_model(model), samples, seq_len, dtype
        described = [[type(m).__name__, m.model_dump(mode="json")] for m in self.recipe]
        self._name = f"{self.model_dir.name}-awq-g{self.group_size}"
        # The calibration pairs themselves, not only their count: rewritten training data must not reuse AWQ's
        # scales searched on the old pairs.
        self._rows = data.travel("train")[:samples]
        in_dtype = () if dtype == "float32" else (dtype,)     # float32 outputs keep their keys from before the option
        self._key = (self.model_dir, described, self._rows, seq_len, _AWQ_FORMAT, *in_dtype)
        self.path = cache.output_dir("awq", f"{self._name}-{cache.cache_key(*self._key)}")
        self.started = None      # when calibration_inputs ran: awq_info.json's seconds count from there
        self._watch = None       # and its peak memory (this process and any it starts)

    @property
    def done(self) -> bool:
        """True when the result is in the cache and verifies."""
        return cache.verify(self.path) is None

    def calibration_inputs(self):
        """What `oneshot` needs: the model (in `dtype`) and the first `samples` travel pairs, tokenized.

        Quiets llmcompressor for the run that follows: its log messages (and "No accelerator available!")
        and torch.fx's deprecation warning stay out of the notebook; errors still raise."""
        import torch
        from datasets import Dataset
        from datasets.utils.logging import disable_progress_bar
        from loguru import logger
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        disable_progress_bar()                  # no "Map: 100%" bar for 128 rows
        logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
        logger.disable("llmcompressor")
        self.started = time.perf_counter()
        self._watch = memwatch.PeakWatch().start()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        net = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=getattr(torch, self.dtype))
        _own_weights(net)
        texts, seq_len = data.chat_texts(tokenizer, self._rows), self.seq_len   # `self` (its memory watch) can't be
        calibration = Dataset.from_dict({"text": texts}).map(                    # hashed by datasets' fingerprint
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=seq_len), batched=True,
            remove_columns=["text"])
        return net, calibration

    def save(self, net) -> Path:
        """Store a model `oneshot` has quantized at `path`: folded into float weights, verified, atomically."""
        return self.cached(lambda tmp, log: _save_into(tmp, net, self, self.samples), force=True)

    def cached(self, make, force: bool) -> Path:
        """`make(tmp, log)` through labkit's cached step at `path` (made once, verified when reused)."""
        step = cache.cached_step("awq", self._name, self._key, make, info_file="awq_info.json", label="AWQ",
                                 force=force)
        return step.path


def _own_weights(net) -> None:
    """Give every weight memory of its own before AWQ rewrites them. transformers maps a checkpoint it keeps in its
    dtype (bfloat16) from the file, copy on write; as AWQ wrote each layer, the mapping kept the old pages beside the
    new weights: 15.4 GB by layer 29 of 32 for Phi-3.5-mini. Copied first, it stays 7.6 GB (+ AWQ's work)."""
    import torch

    with torch.no_grad():
        for param in net.parameters():
            param.data = param.data.clone()


def _quantize_in_child(step: AwqStep, force: bool) -> Path:
    """`quantize` of `step`'s inputs in a fresh Python process; its output lands in the cache as `step.path`. glibc
    keeps up to 1 GiB of freed memory there (labkit.allocator): AWQ of the 1-layer Phi-3.5-mini shadow in bfloat16 on
    an AVX2 CPU, 108 s by default, 48 s with it."""
    import subprocess
    import sys

    if step.done and not force:
        return step.path
    grid = _n_grid(step.recipe)
    if [type(m).__name__ for m in step.recipe] != ["AWQModifier", "QuantizationModifier"] or \
            cache.cache_key(awq_recipe(step.group_size, grid)[0].model_dump(mode="json")) != \
            cache.cache_key(step.recipe[0].model_dump(mode="json")):
        raise InputError("in_child=True runs labkit's recipe (awq.awq_recipe(group_size, n_grid)) in the other "
                         "process; run a recipe of your own in this one (in_child=False).")
    (log := step.path.parent / "logs" / f"{step.path.name}.child.log").parent.mkdir(parents=True, exist_ok=True)
    print(f"AWQ of {step.model_dir.name} in a process of its own (it gives all its memory back when it ends); "
          f"its log: {paths.shown(log)}", flush=True)
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "labkit.training.awq", str(step.model_dir), str(step.group_size),
                               str(grid), str(step.samples), str(step.seq_len), step.dtype, "1" if force else "0"],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=allocator.keep_freed_memory(children.python_env(), allocator.KEEP_FREED_BOUNDED))
    if done.returncode != 0 or not step.done:
        killed = " (killed: out of memory?)" if done.returncode in (-9, 137) else ""
        raise InputError(f"AWQ of {step.model_dir.name} failed in its process (exit {done.returncode}{killed}). "
                         f"Its log: {log}")
    return step.path


def _oneshot(net, calibration, recipe: list, seq_len: int) -> None:
    from llmcompressor import oneshot

    # llmcompressor shuffles with torch's unseeded global RNG by default: each run would make a slightly
    # different AWQ model, and lab 03's answer rates would move by up to 20 points. The statistics AWQ
    # collects do not depend on the order, so the file's order gives the same model every run.
    oneshot(model=net, dataset=calibration, recipe=recipe, max_seq_length=seq_len,
            num_calibration_samples=len(calibration), pipeline="sequential", shuffle_calibration_samples=False)


def _save_into(tmp: Path, net, step: AwqStep, samples: int) -> dict:
    """Fold `net`'s quantized weights into plain weights in place and save them in `tmp`; return its info.

    In place, one Linear at a time: a second copy of the model would double the memory (30 GB for a 3.8B model in
    float32). The checkpoint keeps exactly the source's tensor names: llmcompressor's scales and zero points, which
    it adds beside each weight, stay out."""
    import torch
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from loguru import logger

    logger.enable("llmcompressor")
    started = step.started or time.perf_counter()
    quantized_layers = 0
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear) and hasattr(module, "weight_scale"):
                # dequantize(quantize(W)) in float32, then in the checkpoint's dtype
                weight = fake_quantize(module.weight.float(), module.weight_scale.float(), module.weight_zero_point,
                                       module.quantization_scheme.weights)
                module.weight.copy_(weight.to(module.weight.dtype))
                quantized_layers += 1
    if not quantized_layers:
        raise InputError("The model has no quantized Linear layers: run llmcompressor's oneshot(...) with the "
                         "recipe on it before save_quantized.")
    _save_checkpoint(net, step.model_dir, tmp, step.dtype)
    models.copy_tokenizer(step.model_dir, tmp)
    peak = step._watch.stop() if step._watch else 0
    return {"source": str(step.model_dir), "group_size": recipe_group_size(step.recipe), "symmetric": False,
            "bits": 4, "peak_rss_bytes": peak, "calibration_samples": samples, "quantized_linears": quantized_layers,
            "dtype": step.dtype,
            "n_grid": _n_grid(step.recipe), "seconds": round(time.perf_counter() - started, 1), "format": _AWQ_FORMAT}


def _n_grid(recipe: list) -> int | None:
    return next((m.n_grid for m in recipe if hasattr(m, "n_grid")), None)


def _save_checkpoint(net, source: Path, out: Path, dtype: str) -> None:
    """`net`'s weights under the source checkpoint's tensor names, in safetensors shards, with its config."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors import safe_open
    from safetensors.torch import save_file

    names = set()
    for file in sorted(source.glob("*.safetensors")):
        with safe_open(file, "pt") as f:
            names.update(f.keys())
    state = net.state_dict()
    if not names:        # a checkpoint in another format: every tensor except llmcompressor's additions
        names = {n for n in state if not n.rsplit(".", 1)[-1].startswith(("weight_scale", "weight_zero_point",
                                                                        "weight_g_idx"))}
    missing = sorted(names - state.keys())
    if missing:
        raise InputError(f"AWQ's model lacks {len(missing)} of {source.name}'s tensors (first: {missing[0]}): the "
                         "recipe changed the model's structure, which the ONNX build cannot read.")
    tensors = {name: state[name].contiguous() for name in sorted(names)}
    shards = split_torch_state_dict_into_shards(tensors, max_shard_size="2GB")
    for file, shard_names in shards.filename_to_tensors.items():
        save_file({name: tensors[name] for name in shard_names}, out / file, metadata={"format": "pt"})
    if shards.is_sharded:
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": shards.tensor_to_filename}, indent=2), encoding="utf-8")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = dtype
    if "torch_dtype" in config:
        config["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for extra in ("generation_config.json",):
        if (source / extra).exists():
            (out / extra).write_bytes((source / extra).read_bytes())


def add_outlier_channels(model: str | Path = "tiny", channels: int = 4, factor: float = 30.0,
                         force: bool = False) -> Path:
    """A function-preserving variant whose activations have outlier channels. Lab 03.

    In every layer, `channels` input channels of the attention and MLP norms are multiplied by
    `factor` and the matching weight columns of the next projections divided by it. The model
    computes the same function (up to float rounding), but now a few activation channels are huge
    and their weights tiny: plain rounding (RTN) crushes those weights, which AWQ is built to protect.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = models.resolve_model(model)
    key = cache.cache_key(model_dir, channels, factor, _AWQ_FORMAT)
    final = cache.output_dir("awq", f"{model_dir.name}-outliers-{key}", force=force)
    with cache.cached_dir(final, force, "outlier-channel variant") as tmp:
        if tmp is None:
            return final
        _quiet_transformers()
        net = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in net.model.layers:
                for norm, linear in ((layer.input_layernorm, layer.self_attn.qkv_proj),
                                     (layer.post_attention_layernorm, layer.mlp.gate_up_proj)):
                    idx = torch.randperm(norm.weight.numel(), generator=generator)[:channels]
                    norm.weight[idx] *= factor
                    linear.weight[:, idx] /= factor
        net.save_pretrained(tmp)
        models.copy_tokenizer(model_dir, tmp)
        (tmp / "outliers.json").write_text(json.dumps({"source": str(model_dir), "channels": channels,
                                                       "factor": factor}), encoding="utf-8")
    return final


def compare_with_rtn(model: str | Path = "tiny", group_size: int = 32, eval_rows: list[dict] | None = None,
                     accuracy_level: int | None = None, samples: int = 128, progress: bool = True) -> dict:
    """RTN-INT4 vs AWQ-INT4 against FP32, as ONNX builds: perplexity and per-token KL. Lab 03.

    Both INT4 builds use the builder's RTN with the same group size and asymmetric levels; the
    only difference is whether AWQ prepared the weights first. The measurement is cached like the builds it
    reads: the same builds (their folders are named by their inputs) on the same texts give the same numbers, so
    a re-run of lab 03 reads them back instead of scoring the eval set six times again.
    """
    from ..making import build
    from ..measuring import bench

    model_dir = models.resolve_model(model)
    texts = travel_chat_texts(model_dir, eval_rows)
    int4 = dict(block_size=group_size, algorithm="rtn", accuracy_level=accuracy_level,
                extra={"int4_is_symmetric": "false"}, progress=progress)
    builds = {"fp32": build.build(model_dir, "fp32", progress=progress),
              "rtn-int4": build.build(model_dir, "int4", **int4),
              "awq-int4": build.build(quantize(model_dir, group_size=group_size, samples=samples), "int4", **int4)}

    def measure(tmp: Path, log: Path) -> dict:
        # One pass over the eval texts per build gives both its perplexity and its KL vs FP32.
        log_probs = {name: bench.token_log_probs(b.path, texts) for name, b in builds.items()}
        result = {}
        for name, b in builds.items():
            result[name] = {"perplexity": bench.perplexity_from_log_probs(log_probs[name]),
                            "size_mb": b.size_bytes / 1e6}
            if name != "fp32":
                result[name]["kl"] = bench.kl_of(log_probs["fp32"], log_probs[name])
        return {"builds": {name: b.path.name for name, b in builds.items()}, "result": result}

    key = ({name: b.path.name for name, b in builds.items()}, texts, _COMPARE_FORMAT)
    return cache.cached_step("measured", f"{model_dir.name}-rtn-vs-awq-g{group_size}", key, measure,
                             info_file="comparison.json", label="RTN vs AWQ comparison").info["result"]


def rtn_vs_awq(model: str | Path = "tiny", group_size: int = 32, outlier_channels: int = 4,
               outlier_factor: float = 30.0, samples: int = 128, progress: bool = True):
    """RTN vs AWQ on the lab model and on its outlier-channel variant, as one table. Lab 03.

    With the lab's `samples`, the lab model's AWQ output is the one the fine-tune starts from (one AWQ run, cached)."""
    import pandas as pd

    variants = {"lab model": models.resolve_model(model),
                f"outliers ({outlier_channels} ch x{outlier_factor:g})":
                    add_outlier_channels(model, outlier_channels, outlier_factor)}
    rows = []
    for variant, model_dir in variants.items():
        result = compare_with_rtn(model_dir, group_size, samples=samples, progress=progress)
        for method in ("rtn-int4", "awq-int4"):
            rows.append({"model": variant, "method": method, "perplexity": result[method]["perplexity"],
                         "fp32 perplexity": result["fp32"]["perplexity"], "kl_x1e3": 1e3 * result[method]["kl"],
                         "size_mb": result[method]["size_mb"], "fp32 size_mb": result["fp32"]["size_mb"]})
    table = pd.DataFrame(rows).set_index(["model", "method"])
    for variant in variants:
        rtn_kl = table.loc[(variant, "rtn-int4"), "kl_x1e3"]
        table.loc[(variant, "awq-int4"), "kl_vs_rtn"] = table.loc[(variant, "awq-int4"), "kl_x1e3"] / rtn_kl
    return table


def findings(table) -> str:
    """One line per model of `rtn_vs_awq`'s table: did AWQ beat RTN there, by the KL? Lab 03."""
    lines = []
    for variant in table.index.get_level_values("model").unique():
        ratio = table.loc[(variant, "awq-int4"), "kl_vs_rtn"]
        verdict = "yes, AWQ kept it closer to FP32" if ratio < 1 else "no, RTN kept it closer to FP32"
        lines.append(f"{variant}: AWQ's KL is {ratio:.2f}x RTN's. AWQ beat RTN here: {verdict}.")
    return "\n".join(lines)


def plot_rtn_vs_awq(table):
    """Bar chart of per-token KL vs FP32 for RTN and AWQ on each model variant. Lab 03."""
    kl = table["kl_x1e3"].unstack("method")
    from ..measuring.report import METHOD_COLOURS

    kl = kl[sorted(kl.columns, key=lambda m: not m.startswith("rtn"))]     # RTN first, as in the report
    ax = kl.plot.bar(figsize=(6, 3.5), rot=0, color=[METHOD_COLOURS[m.split("-")[0]] for m in kl.columns])
    ax.set(ylabel="KL(fp32 || int4) x 1e-3 per token", xlabel="", title="INT4 error: RTN vs AWQ (lower is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


if __name__ == "__main__":      # the child of `quantize(in_child=True)`: MODEL GROUP GRID SAMPLES SEQ DTYPE FORCE
    import sys
    source, group, grid, pairs, length, kind, again = sys.argv[1:8]
    install_for(kind)      # AWQ's calibration forwards in float32 on a CPU without bfloat16 instructions
    print(quantize(source, awq_recipe(int(group), int(grid)), samples=int(pairs), seq_len=int(length), dtype=kind,
                   force=again == "1"))
