"""Build ONNX Runtime GenAI models with the model builder, cached and atomic. Taught in lab 01.

    python -m onnxruntime_genai.models.builder -m MODEL -o OUT -p int4 -e cpu -c CACHE \\
        --extra_options int4_block_size=32 int4_accuracy_level=4 int4_algo_config=rtn

`build()` calls the same builder through its Python API (`create_model`) and adds what a
workshop needs around it:

- every option is checked before any heavy work (precision x execution provider, block size,
  accuracy level, algorithm, architecture, free disk), with an error that names the fix;
- the build runs in a temp folder and is moved into place only when complete;
- finished builds are reused: the cache key is the input model's content plus the options;
- the builder's thousands of log lines go to a log file, summarized by a progress bar.

INT8 on CPU: the pinned builder (onnxruntime-genai 0.12.2, see requirements/requirements.in) has no
`-p int8`. The recipe is an FP32 build whose MatMuls ONNX Runtime's own `MatMulNBitsQuantizer` turns
into 8-bit MatMulNBits (`quantize_int8`, the same quantizer the builder uses for INT4, with bits=8).

Memory: `build()` quantizes INT4 and INT8 one MatMul at a time inside the builder (`labkit.lean`),
with the same result bit for bit; that is what lets Phi-3.5-mini build on a 16 GB laptop (7.7 GB
peak instead of ≈ 40 GB).
"""

from __future__ import annotations

import errno
import io
import json
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core import cache, paths, sizing
from ..core.errors import LabkitError
from . import lean, models, tokenizer
from .last_position import every_position_logits, prunes_lm_head  # noqa: F401  (lab 01 names them build.*)

# Precision -> execution providers the builder supports it on (from the builder's own help).
SUPPORTED = {
    "fp32": ("cpu", "cuda"),
    "fp16": ("cuda", "dml", "webgpu"),
    "bf16": ("cuda",),
    "int8": ("cpu",),          # labkit: FP32 build + 8-bit MatMulNBits (see module docstring)
    "int4": ("cpu", "cuda", "dml", "webgpu"),
}
BLOCK_SIZES = (16, 32, 64, 128, 256)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)   # 0 = the EP's default; 4 = int8 compute (fastest on CPU)
ALGORITHMS = ("default", "rtn", "rtn_last", "k_quant", "k_quant_mixed", "k_quant_last")
ARCHITECTURES = (
    "ChatGLMModel", "Ernie4_5_ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "GptOssForCausalLM", "GraniteForCausalLM", "InternLM2ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
    "NemotronForCausalLM", "OlmoForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM", "PhiMoEForCausalLM",
    "Phi3SmallForCausalLM", "Phi3VForCausalLM", "Phi4MMForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "SmolLM3ForCausalLM",
)
_BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.1, "int4": 0.6}
_TYPED_EXTRAS = {"int4_block_size": "block_size", "int4_accuracy_level": "accuracy_level",
                 "int4_algo_config": "algorithm"}
_BUILD_FORMAT = "labkit-build-v4"  # bump when what build() writes changes


class BuildError(LabkitError, ValueError):
    """Bad build input, or a build that failed; the message says how to fix it. Lab 01."""


@dataclass(frozen=True)
class BuildOptions:
    """One model-builder configuration. `None` leaves the builder's default. Lab 01."""

    precision: str = "int4"
    execution_provider: str = "cpu"
    block_size: int | None = None        # int4/int8: weights per quantization block
    accuracy_level: int | None = None    # int4/int8: compute precision of MatMulNBits
    algorithm: str | None = None         # int4: rtn, k_quant, ...
    extra: dict = field(default_factory=dict)   # any other --extra_options KEY=VALUE

    @property
    def name(self) -> str:
        """A short label such as `int4-k_quant-b64-acc4` for tables and folder names."""
        parts = [self.precision]
        if self.algorithm:
            parts.append(self.algorithm)
        if self.block_size:
            parts.append(f"b{self.block_size}")
        if self.accuracy_level is not None:
            parts.append(f"acc{self.accuracy_level}")
        if self.execution_provider != "cpu":
            parts.append(self.execution_provider)
        return "-".join(parts)

    def validate(self) -> None:
        p, ep = self.precision, self.execution_provider
        if p not in SUPPORTED:
            raise BuildError(f"Unknown precision {p!r}. Choose one of: {', '.join(SUPPORTED)}.")
        if ep not in {e for eps in SUPPORTED.values() for e in eps}:
            raise BuildError(f"Unknown execution provider {ep!r}. Choose one of: cpu, cuda, dml, webgpu.")
        if ep not in SUPPORTED[p]:
            raise BuildError(f"{p} is not supported on the {ep} execution provider; {p} runs on: "
                             f"{', '.join(SUPPORTED[p])}. On {ep} choose one of: "
                             f"{', '.join(q for q, eps in SUPPORTED.items() if ep in eps)}.")
        quantized = p in ("int4", "int8")
        for key, option in _TYPED_EXTRAS.items():
            if key in self.extra:
                raise BuildError(f"extra={{{key!r}: {self.extra[key]!r}}}: pass {option}= instead, which labkit "
                                 "checks before the build (the builder would fail deep in quantization).")
        for option, value in (("block_size", self.block_size), ("accuracy_level", self.accuracy_level)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BuildError(f"{option}={value!r} must be a whole number (int), e.g. "
                                 f"{option}={int(value) if str(value).replace('.', '', 1).isdigit() else 4}.")
        for option, value in (("block_size", self.block_size), ("accuracy_level", self.accuracy_level)):
            if value is not None and not quantized:
                raise BuildError(f"{option} only applies to int4/int8 builds, not {p}. Remove it.")
        if self.algorithm is not None and p != "int4":
            raise BuildError(f"algorithm only applies to int4 builds, not {p}. Remove it.")
        if self.block_size is not None and self.block_size not in BLOCK_SIZES:
            raise BuildError(f"block_size={self.block_size} is invalid; use one of {BLOCK_SIZES} "
                             "(smaller blocks: more accurate, slightly larger).")
        if self.accuracy_level is not None and self.accuracy_level not in ACCURACY_LEVELS:
            raise BuildError(f"accuracy_level={self.accuracy_level} is invalid; use one of {ACCURACY_LEVELS} "
                             "(1 fp32, 2 fp16, 3 bf16, 4 int8 compute; 0 = the EP's default).")
        if self.algorithm is not None and self.algorithm not in ALGORITHMS:
            raise BuildError(f"algorithm={self.algorithm!r} is invalid; use one of {ALGORITHMS}.")

    def extra_options(self) -> dict[str, str]:
        """The builder's `--extra_options` for this configuration (strings, as on the CLI)."""
        extra = {k: str(v) for k, v in self.extra.items()}
        if self.precision == "int4":
            if self.block_size is not None:
                extra["int4_block_size"] = str(self.block_size)
            if self.accuracy_level is not None:
                extra["int4_accuracy_level"] = str(self.accuracy_level)
            if self.algorithm is not None:
                extra["int4_algo_config"] = self.algorithm
        return extra

    def cli(self, model: str = "MODEL", output: str = "OUT") -> str:
        """The equivalent command line, for attendees to copy. Lab 01.

        The model builder, then labkit's keep-tokenizer (the builder alone writes a tokenizer class og cannot
        load). The builder has no `-p int8`: that line is labkit's own build command."""
        model, output = shlex.quote(model), shlex.quote(output)
        if self.precision == "int8":
            options = "".join(f" --{name.replace('_', '-')} {value}" for name, value in
                              (("block_size", self.block_size), ("accuracy_level", self.accuracy_level))
                              if value is not None)
            if self.extra:
                options += " --extra-options " + " ".join(f"{k}={v}" for k, v in self.extra.items())
            return (f"python -m labkit build {model} --precision int8 --execution-provider {self.execution_provider}"
                    f"{options}   # FP32 by the model builder, then 8-bit MatMulNBits (labkit.build.quantize_int8)")
        cmd = (f"python -m onnxruntime_genai.models.builder -m {model} -o {output} "
               f"-p {self.precision} -e {self.execution_provider} -c cache")
        if self.extra_options():
            cmd += " --extra_options " + " ".join(f"{k}={v}" for k, v in self.extra_options().items())
        return f"{cmd} && python -m labkit keep-tokenizer {model} {output}"


@dataclass
class Build:
    """A finished build: where it is and what it cost. Lab 01."""

    path: Path
    options: BuildOptions
    seconds: float
    cached: bool
    log: Path

    @property
    def size_bytes(self) -> int:
        return paths.dir_size(self.path)

    @property
    def info(self) -> dict:
        return json.loads((self.path / "build_info.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ validation
def check_model_dir(model_dir: Path) -> dict:
    """The checkpoint's config, after checking the builder can handle it. Lab 01."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.exists():
        raise BuildError(f"{model_dir} has no config.json: pass a Hugging Face checkpoint folder, `tiny`, "
                         "or a hub id.")
    try:
        config = paths.read_json(config_path, "restore the checkpoint's config.json (re-download it, e.g. "
                                 "`hf download MODEL_ID`) or recreate the folder")
    except ValueError as err:
        raise BuildError(str(err)) from None
    arch = (config.get("architectures") or ["<none>"])[0]
    if arch not in ARCHITECTURES:
        raise BuildError(f"The model builder cannot build architecture {arch!r}. Supported: "
                         f"{', '.join(ARCHITECTURES)}.")
    if not any((Path(model_dir) / name).exists() for name in ("tokenizer.json", "tokenizer.model")):
        raise BuildError(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer.model); the builder "
                         "copies it next to the ONNX model. Save the tokenizer into the folder.")
    return config


def _estimate_output_bytes(model_dir: Path, config: dict, precision: str) -> int:
    """Rough size of the build, from the checkpoint's weight files and the precision. Lab 01."""
    weights = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors")) or \
        sum(f.stat().st_size for f in Path(model_dir).glob("*.bin"))
    dtype = str(config.get("torch_dtype", config.get("dtype", "float32")))
    src_bytes = 2.0 if dtype in ("bfloat16", "float16") else 4.0
    return int(weights / src_bytes * _BYTES_PER_WEIGHT[precision])


def _check_disk(where: Path, needed: int) -> None:
    """Fail before building when the disk cannot hold the build. Lab 01."""
    free = shutil.disk_usage(where).free
    if free < needed:
        raise BuildError(f"Not enough disk: the build needs about {needed / 1e9:.1f} GB, {where} has "
                         f"{free / 1e9:.1f} GB free. Free some space or set LABKIT_CACHE to a bigger disk.")


# ------------------------------------------------------------------ building
def builds_root() -> Path:
    """Where finished builds live: `<cache>/builds/`. Lab 01."""
    root = paths.cache_dir() / "builds"
    root.mkdir(parents=True, exist_ok=True)
    return root


def build(model: str | Path = "tiny", precision: str = "int4", execution_provider: str = "cpu", *,
          block_size: int | None = None, accuracy_level: int | None = None, algorithm: str | None = None,
          extra: dict | None = None, force: bool = False, progress: bool = True,
          check_memory: bool = True) -> Build:
    """Build `model` for onnxruntime-genai (or reuse the finished build). Lab 01.

    `model` is `tiny`, a local checkpoint folder or a hub id (see `labkit.models.resolve_model`).
    A build that needs more RAM than is available (`labkit.sizing`, measured on shadows) is refused
    before it starts; `check_memory=False` starts it anyway.
    """
    options = BuildOptions(precision, execution_provider, block_size, accuracy_level, algorithm, extra or {})
    options.validate()                              # cheap checks first,
    model_dir = models.resolve_model(model)         # then find (or create) the model,
    config = check_model_dir(model_dir)
    _check_k_quant_blocks(options, config)
    label = Path(str(model)).name if str(model) not in models.SPECS else str(model)

    def make(tmp: Path, log: Path) -> dict:
        if check_memory:
            _check_memory(options, config, label)
        _check_disk(builds_root(), int(_estimate_output_bytes(model_dir, config, options.precision) * 1.5))
        _run_logged(model_dir, tmp, options, config, log, progress)
        tokenizer.keep_source_tokenizer(model_dir, tmp)
        return {"model": str(model), "model_dir": str(model_dir), "options": asdict(options), "name": options.name,
                "format": _BUILD_FORMAT}

    step = cache.cached_step("builds", f"{label}-{options.name}", (model_dir, asdict(options), _BUILD_FORMAT), make,
                             info_file="build_info.json", label=f"{options.name} build", force=force)
    return Build(step.path, options, step.seconds, step.cached, step.log)


def _check_k_quant_blocks(options: BuildOptions, config: dict) -> None:
    """k_quant packs the 4-bit zero points of two blocks per byte, row by row: onnxruntime-genai 0.12's builder
    fails deep in quantization when a layer's input width holds an odd number of blocks (width 192, blocks of 64)."""
    if options.precision != "int4" or not (options.algorithm or "").startswith("k_quant"):
        return
    block = options.block_size or 32                 # the builder's default int4_block_size
    widths = {name: config[name] for name in ("hidden_size", "intermediate_size") if config.get(name)}

    def odd(size: int) -> list[str]:
        return [name for name, width in widths.items() if -(-width // size) % 2]

    if odd(block):
        fits = [size for size in BLOCK_SIZES if not odd(size) and all(w % size == 0 for w in widths.values())]
        name = odd(block)[0]
        raise BuildError(f"k_quant with block_size={block} needs an even number of blocks per row; {name}="
                         f"{widths[name]} holds {widths[name] / block:g}. Use block_size one of {fits}.")


def _check_memory(options: BuildOptions, config: dict, label: str) -> None:
    """Refuse a build that would not fit in this machine's RAM (measured on shadows; INT4/INT8/FP32 only)."""
    if options.precision not in sizing.MEASURED_PHI35_MINI:
        return
    need = sizing.build_requirement(options.precision, sizing.text_config(config))
    try:
        sizing.check_fits(f"The {options.name} build of {label}", need["peak_rss_bytes"], need["basis"])
    except sizing.DoesNotFit as err:
        raise BuildError(f"{err} (build(..., check_memory=False))") from None


def _run_logged(model_dir: Path, out_dir: Path, options: BuildOptions, config: dict, log: Path, progress: bool):
    """The builder with its output in `log`; any failure becomes a BuildError naming the log."""
    log_file = log.open("w", encoding="utf-8")
    try:
        _run_builder(model_dir, out_dir, options, config, log_file, progress)
    except (BuildError, KeyboardInterrupt):
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise         # cache.cached_step says the disk is full, and where
        raise BuildError(f"The model builder failed on {options.name}: {type(exc).__name__}: {exc}\n"
                         f"Full log: {log}") from exc
    except Exception as exc:
        raise BuildError(f"The model builder failed on {options.name}: {type(exc).__name__}: {exc}\n"
                         f"Full log: {log}") from exc
    finally:
        try:
            log_file.close()
        except OSError:
            pass          # a full disk cannot take the log's last lines; the error being raised says why


def _run_builder(model_dir: Path, out_dir: Path, options: BuildOptions, config: dict, log_file, progress: bool):
    from onnxruntime_genai.models.builder import check_extra_options, create_model
    from tqdm.auto import tqdm

    precision, bits, extra = options.precision, 4, options.extra_options()
    if precision == "int8":
        # The builder's quantized path with 8-bit weights (labkit.lean): the FP32 build + quantize_int8
        # result without holding an FP32 model. Accuracy level 4 (int8 compute) is ~10x faster than
        # the quantizer's default on CPU, and the builder's own default for INT4 on CPU.
        precision, bits = "int4", 8
        extra.update(int4_block_size=str(options.block_size or 32),
                     int4_accuracy_level=str(4 if options.accuracy_level is None else options.accuracy_level))
    # The builder's CLI turns "false" into False (and splits list options) before `create_model`; called from
    # Python, a string "false" would be truthy and `int4_is_symmetric=false` would build symmetric levels.
    check_extra_options(extra, options.execution_provider)
    layers = config.get("num_hidden_layers", 1)
    # One tick per layer read, per quantized MatMul (Phi-3 int4: 5 per layer + lm_head), per save step.
    total = layers + 3 + (5 * layers + 1 if precision == "int4" else 0) + 2
    source = re.sub(r"-[0-9a-f]{12}", "", model_dir.name)      # "tiny-outliers", not the cache key's digests
    bar = tqdm(total=total, desc=f"building {source} {options.name}", disable=not progress, file=sys.stderr)
    from transformers.utils import logging as hf_logging

    # One cache folder per build: the builder deletes its cache folder at the end when it is empty, so a shared
    # one would vanish under a concurrent build (two attendees on one server: FileNotFoundError).
    hf_cache = Path(tempfile.mkdtemp(prefix=".hf-cache-", dir=builds_root()))
    hf_logging.disable_progress_bar()   # the builder's "Loading weights" bar would bypass the log file
    try:
        with cache.captured_output(log_file, bar), lean.patched_builder(bits=bits):
            create_model(None, str(model_dir), str(out_dir), precision, options.execution_provider, str(hf_cache),
                         **extra)
    finally:
        shutil.rmtree(hf_cache, ignore_errors=True)
        bar.n = bar.total
        bar.close()


def quantize_int8(model_dir: Path, block_size: int = 32, accuracy_level: int | None = None, log_file=None) -> None:
    """Turn an FP32 build's MatMuls into 8-bit MatMulNBits in place (ONNX Runtime's quantizer). Lab 01.

    The recipe `build(precision="int8")` reproduces bit for bit with less memory (tests/test_lean.py);
    it needs the whole FP32 model in memory, so it suits small models.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model_path = Path(model_dir) / "model.onnx"
    with cache.captured_output(log_file or io.StringIO()):
        quantizer = MatMulNBitsQuantizer(onnx.load(model_path), bits=8, block_size=block_size, is_symmetric=True,
                                         accuracy_level=accuracy_level)
        quantizer.process()
    for f in (model_path, model_path.with_name("model.onnx.data")):
        f.unlink(missing_ok=True)
    onnx.save_model(quantizer.model.model, model_path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)


def build_all(model: str | Path, precisions, execution_provider: str = "cpu", int4_variants=(),
              force: bool = False, progress: bool = True, quantized: dict | None = None) -> dict[str, Build]:
    """Build `model` in each precision, plus each INT4 variant (a dict of int4 options). Lab 01.

    `quantized`: the options of the `int4` and `int8` rows themselves (a profile's, e.g. the laptop's blocks of
    128); the rows keep their precision's name. All options are checked before the first build starts, so a typo
    fails in a second, not after ten minutes of building.
    """
    plan = [(p, BuildOptions(p, execution_provider, **(quantized or {}) if p in ("int4", "int8") else {}))
            for p in precisions]
    if "int4" in precisions:
        plan += [(None, BuildOptions("int4", execution_provider, **variant)) for variant in int4_variants]
    for _, options in plan:
        options.validate()
    builds = {}
    for name, options in plan:
        builds[name or options.name] = build(model, options.precision, options.execution_provider,
                                             block_size=options.block_size, accuracy_level=options.accuracy_level,
                                             algorithm=options.algorithm, extra=options.extra, force=force,
                                             progress=progress)
    return builds


def summary(builds: dict[str, Build]):
    """One row per build: time, cache hit, size, and the equivalent command line (a DataFrame). Lab 01.

    The command builds into a folder named after the build, in the folder it is run from (not into the cache)."""
    import pandas as pd

    def source(b: Build) -> str:      # a hub id as given (the builder downloads it); else the checkpoint's folder
        given = str(b.info["model"])
        return given if "/" in given and not Path(given).exists() else str(b.info["model_dir"])

    rows = {name: {"seconds": round(b.seconds, 2), "cached": b.cached, "size_mb": round(b.size_bytes / 1e6, 2),
                   "cli": b.options.cli(source(b), name)} for name, b in builds.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
