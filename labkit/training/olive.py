"""Lab 03's Olive steps: LoRA fine-tuning and ONNX export with a swappable adapter.

    olive finetune --method lora -m MODEL --data_name json --data_files data/travel/train.jsonl \\
        --text_template "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>" \\
        --torch_dtype float32 --max_steps 60 -o finetuned
    olive auto-opt -m MODEL -a finetuned/adapter -o onnx --device cpu --provider CPUExecutionProvider \\
        --use_model_builder --use_ort_genai --precision int4

Each step runs Olive's command line in a subprocess, with the random generators seeded first
(`labkit.training.olive_seeded`: the same command trains the same adapter). Olive attaches its own stdout logger
at import time and the trainer prints a line per step, so in-process calls would flood the
notebook; a subprocess keeps the notebook readable (a progress bar and the loss), writes each
step's complete log to a file, and frees the training memory when the step ends. `olive auto-opt`
(model builder + adapter extraction) has no Python API in Olive 0.13 anyway.

Both steps are cached by their inputs and written atomically, like every labkit build.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import allocator, cache, children, data, paths
from ..core.errors import InputError, LabkitError, MissingInput
from ..making import models
from ..measuring import memwatch
from ..runtime import adapters
from . import chat_format, onnx_adapter
from .awq import DTYPES

PHI3_TEMPLATE = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"
PHI3_LORA_TARGETS = "qkv_proj,o_proj,gate_up_proj,down_proj"
_OLIVE_FORMAT = "labkit-olive-v3"   # bump when the output of the same inputs changes
_EXPORT_FORMAT = "labkit-olive-export-v3"   # the export's adapter carries its base model's fingerprint
ARCHITECTURES = ("Phi3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


class OliveStepError(LabkitError, RuntimeError):
    """An Olive step failed; the message names the step, the likely cause and the full log. Lab 03."""


@dataclass
class FineTune:
    """A LoRA fine-tune: the adapter folder, the loss curve and where the log is. Lab 03."""

    adapter: Path
    base_model: Path
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False
    log: Path | None = None
    blocks: int = 0           # max_seq_len-token blocks Olive cut the training file into
    passes: float = 0.0       # passes over them, as the trainer counted its epochs


def _check_architecture(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or ["<none>"])[0]
    if arch not in ARCHITECTURES:
        raise OliveStepError(f"Lab 03's Olive flow is set up for {', '.join(ARCHITECTURES)}; {model_dir} is "
                             f"{arch}. Use model='tiny' or a Phi-3 checkpoint.")


def _olive_env(args: list[str] = ()) -> dict:
    """Olive's environment: offline, quiet, unbuffered; glibc keeps freed memory (labkit.allocator) for a small
    checkpoint (`-m`: the tiny model's LoRA steps take 40 % less time) and, bounded, for a real-size fine-tune."""
    env = dict(os.environ, OLIVE_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    if "-m" in args and allocator.is_small_checkpoint(args[args.index("-m") + 1]):
        return allocator.keep_freed_memory(env)
    return allocator.keep_freed_memory(env, allocator.KEEP_FREED_BOUNDED) if args[:1] == ["finetune"] else env


def _shown(args: list[str]) -> str:
    """The command line as the notebook prints it: the cache as $LABKIT_CACHE, the step's temp output as OUT, course
    files relative to the course folder, newlines as \\n."""
    cache_root, repo = str(paths.cache_dir()), str(paths.REPO) + "/"
    shown = []
    for arg in args:
        arg = re.sub(r"\S*/\.tmp-[^/\s]+", "OUT", arg).replace(repo, "")
        shown.append(shlex.quote(arg).replace(cache_root, "$LABKIT_CACHE").replace("\n", "\\n"))
    return "$ olive " + " ".join(shown)


def _run_olive(step: str, args: list[str], log: Path, expect: Path, on_line=None, on_start=None) -> int:
    """Run `olive ARGS` (seeded, see labkit.training.olive_seeded) with its output in `log`; raise OliveStepError
    unless it wrote `expect`. Returns the peak resident memory of this process and Olive's, together.

    Olive 0.13 logs "Pass run failed" and still exits 0 when a pass raises, so the exit code alone
    is not enough: the step succeeded only if its output exists."""
    # Olive keeps its .olive-cache in the working dir: one per run, so concurrent runs on a shared
    # cache (attendees on one server) never share Olive's own cache files.
    work_root = paths.cache_dir() / "olive-work"
    work_root.mkdir(parents=True, exist_ok=True)
    _remove_dead_workdirs(work_root)
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=work_root))
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "labkit.training.olive_seeded", *args]     # `olive ARGS`, seeded (see that module)
    print(_shown(args))
    if on_start:
        on_start()
    try:
        with memwatch.PeakWatch() as watch:
            code = _stream(command, workdir, log, on_line, _olive_env(args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if code != 0 or not expect.exists():
        raise OliveStepError(f"Olive step '{step}' failed (exit {code}, no {expect.name} written): "
                             f"{_last_error(log)}\nFull log: {log}")
    return watch.peak_bytes


def _remove_dead_workdirs(work_root: Path) -> None:
    """Olive work folders (`run-<pid>-*`) of processes that no longer run: what a killed step left behind."""
    import psutil

    for folder in work_root.glob("run-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):   # not os.kill(pid, 0): on Windows, Ctrl-C
            shutil.rmtree(folder, ignore_errors=True)


def _stream(command: list[str], workdir: Path, log: Path, on_line, env: dict | None = None) -> int:
    """Run `command` with its output written to `log` line by line; return its exit code.

    An interrupt (Jupyter's stop button) stops the child too; a killed parent is noticed by the child itself
    (`LABKIT_PARENT_PID`, see labkit.training.olive_seeded)."""
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(command) + "\n\n")
        out.flush()
        env = children.python_env(env or _olive_env(), LABKIT_PARENT_PID=str(os.getpid()))
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   bufsize=1, **children.TEXT)
        try:
            for line in process.stdout:
                out.write(line)
                if on_line:
                    on_line(line)
            return process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _last_error(log: Path) -> str:
    lines, ignored = [], False
    for line in log.read_text(errors="replace", encoding="utf-8").splitlines():
        # Python's "Exception ignored in atexit callback" at interpreter shutdown (Python 3.12: OpenTelemetry's log
        # handler starting a thread) is noise after the step's own error: skip it up to its error line.
        if line.startswith("Exception ignored in"):
            ignored = True
        elif ignored and re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line):
            ignored = False
        elif not ignored and line.strip():
            lines.append(line.strip())
    errors = [line for line in lines if re.search(r"(Error|Exception)\b", line) and not line.startswith("File ")]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


_LOSS_LINE = re.compile(r"\{'loss': '?([0-9.]+)'?.*?'epoch': '?([0-9.]+)'?\}")


def finetune(model: str | Path = "tiny", steps: int = 600, lora_r: int = 16, lora_alpha: int = 16,
             learning_rate: float = 6e-3, batch_size: int = 8, max_seq_len: int | None = None,
             logging_steps: int = 5, train_file: str | Path | None = None, torch_dtype: str = "float32",
             lora_layers: int | None = None, force: bool = False, progress: bool = True) -> FineTune:
    """LoRA fine-tune `model` on travel Q&A with Olive (Phi-3 chat template). Lab 03.

    `torch_dtype`: float32 (the default: fastest for a small model on a CPU) or bfloat16 (half the memory: a 3.8B
    model trains in ≈ 9 GB instead of 22, and on a CPU with bfloat16 instructions each step takes less than half
    the time). `lora_layers=N` puts LoRA on the last N decoder layers only (default: all): the backward pass
    then stops there, so each step costs less.

    `olive finetune` joins the pairs into one token stream, a blank line between them, and cuts it into blocks of
    `max_seq_len` tokens (its text-generation pre-processing's default strategy, "join"): nothing is padded, and
    every step trains on `batch_size` × `max_seq_len` tokens whatever the pairs' lengths. A pair that straddles two
    blocks is learned in two pieces. By default a block is the longest pair, rounded up to 16.

    Gradient checkpointing (Olive's default) recomputes each layer's forward pass during the backward one to keep
    activations out of memory, and Olive then makes the embeddings' output require a gradient, so the backward pass
    runs through every layer even when LoRA sits on the last ones. It is on only where activations are large
    (`checkpointing`): the same adapter, and less time per step — the tiny model, 40 steps: 20 s against 17 s;
    Phi-3.5-mini in bfloat16, LoRA on the last 8 of 32 layers, 1 block: 41 s against 27 s a step (AVX2 CPU)."""
    train_file = Path(train_file) if train_file else paths.DATA / "travel" / "train.jsonl"
    _check_settings(steps=steps, lora_r=lora_r, lora_alpha=lora_alpha, batch_size=batch_size,
                    logging_steps=logging_steps, learning_rate=learning_rate,
                    **({"lora_layers": lora_layers} if lora_layers is not None else {}))
    if torch_dtype not in DTYPES:
        raise InputError(f"torch_dtype={torch_dtype!r}: use one of {', '.join(DTYPES)}.")
    logging_steps = min(logging_steps, steps)      # a run shorter than one logging interval still logs its loss
    rows = data.validate_travel(train_file)            # file:line errors before any training
    model_dir = models.resolve_model(model)
    _check_architecture(model_dir)
    lengths, joiner = pair_tokens(model_dir, rows)
    longest = max(lengths)
    context = int(paths.read_json(model_dir / "config.json", "restore the checkpoint")["max_position_embeddings"])
    if longest > context:
        line = [n for n, text in enumerate(train_file.read_text(encoding="utf-8").splitlines(), 1) if text.strip()]
        raise InputError(f"{train_file}:{line[lengths.index(longest)]}: this pair is {longest:,} tokens, longer than "
                         f"the model's context ({context:,}): it could never read it whole. Shorten it or remove it.")
    max_seq_len, blocks = _blocks(max_seq_len, lengths, joiner, context, train_file)
    settings = dict(steps=steps, r=lora_r, alpha=lora_alpha, lr=learning_rate, bs=batch_size, seq=max_seq_len,
                    blocks=blocks)
    if torch_dtype != "float32":      # the cache keys of float32 fine-tunes made before these options stay valid
        settings["dtype"] = torch_dtype
    if lora_layers is not None:
        settings["targets"] = lora_targets(model_dir, lora_layers)

    def make(tmp: Path, log: Path) -> dict:
        seconds, losses, passes, peak = _finetune_into(tmp, model_dir, train_file, settings, logging_steps, log,
                                                       progress)
        return {"base_model": str(model_dir), "settings": settings, "train_pairs": len(rows), "losses": losses,
                "passes": passes, "seconds": round(seconds, 1), "peak_rss_bytes": peak}

    step = cache.cached_step("olive", f"{model_dir.name}-lora-r{lora_r}-s{steps}",
                             (model_dir, settings, cache.file_sha256(Path(train_file)), _OLIVE_FORMAT), make,
                             info_file="finetune_info.json", label="LoRA fine-tune", force=force)
    return FineTune(step.path / "adapter", model_dir, [tuple(x) for x in step.info["losses"]], step.info["seconds"],
                    step.cached, step.log, settings["blocks"], step.info["passes"])


def lora_targets(model_dir: Path, layers: int) -> str:
    """`--target_modules` for LoRA on the last `layers` decoder layers: peft matches a name by its ending, so
    `layers.31.mlp.down_proj` picks one layer's projection. Lab 03."""
    depth = int(paths.read_json(Path(model_dir) / "config.json", "restore the checkpoint")["num_hidden_layers"])
    if layers > depth:
        raise InputError(f"lora_layers={layers}: the model has {depth} decoder layers; use 1 to {depth}.")
    projections = {"qkv_proj": "self_attn", "o_proj": "self_attn", "gate_up_proj": "mlp", "down_proj": "mlp"}
    return ",".join(f"layers.{n}.{block}.{name}" for n in range(depth - layers, depth)
                    for name, block in projections.items())


def checkpointing(settings: dict) -> bool:
    """Whether a fine-tune needs gradient checkpointing: bfloat16 (the full-size path) with more than 2 blocks a step.
    Without it, Phi-3.5-mini's activations for 1 block of 112 tokens took 0.5 GB (LoRA on the last 8 layers) to
    1.3 GB (all 32) more than with it; 8 blocks would need ≈ 10 GB more, beyond a 16 GB laptop. Lab 03."""
    return settings.get("dtype", "float32") != "float32" and settings["bs"] > 2


def _check_settings(**settings) -> None:
    """Whole numbers >= 1 and a finite learning rate > 0, before Olive starts (it would fail 20 s later)."""
    import math

    for name, value in settings.items():
        if name == "learning_rate":
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not (math.isfinite(value) and value > 0):
                raise InputError(f"learning_rate={value!r} must be a number > 0 (lab 03 uses 6e-3).")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}={value!r} must be a whole number >= 1.")


def _blocks(max_seq_len: int | None, lengths: list[int], joiner: int, context: int,
            train_file: Path) -> tuple[int, int]:
    """The block length (by default the longest pair rounded up to 16) and how many blocks Olive cuts."""
    longest = max(lengths)
    if max_seq_len is None:
        max_seq_len = -(-longest // 16) * 16
    elif not 16 <= max_seq_len <= context:
        raise InputError(f"max_seq_len={max_seq_len} must be between 16 and the model's context ({context}); "
                         f"leave it out for labkit's default ({-(-longest // 16) * 16}: the longest pair, "
                         f"{longest} tokens, rounded up to 16).")
    stream = sum(lengths) + joiner * len(lengths)
    if stream <= max_seq_len:      # Olive would cut no block and fail in the trainer, far from the cause
        raise InputError(f"{train_file.name} holds {stream} tokens, not enough for one block of max_seq_len="
                         f"{max_seq_len}: Olive joins the pairs and cuts blocks of that length. Add pairs or pass a "
                         f"smaller max_seq_len.")
    return max_seq_len, stream // max_seq_len


def pair_tokens(model_dir: Path, rows: list[dict]) -> tuple[list[int], int]:
    """Each pair's tokens as Olive's pre-processing makes them (the chat template, no BOS or EOS: `olive finetune`
    leaves --add_special_tokens off), and the tokens of the blank line Olive joins them with. Lab 03."""
    tokenizer = chat_format.tokenizer(model_dir)
    template = chat_format.text_template(model_dir, tokenizer)
    texts = [template.format(**row) for row in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return lengths, len(tokenizer.encode("\n\n", add_special_tokens=False))


def _finetune_into(tmp: Path, model_dir: Path, train_file: Path, settings: dict, logging_steps: int, log: Path,
                   progress: bool) -> tuple[float, list, float, int]:
    """`olive finetune` into `tmp/adapter`; returns seconds, the (step, loss) pairs it logged, its passes and the
    peak memory."""
    from tqdm.auto import tqdm

    steps = settings["steps"]
    losses, epochs, bars = [], [], []

    def on_start():          # the bar goes below the command line, not above it
        bars.append(tqdm(total=steps, desc="LoRA fine-tuning", disable=not progress))

    def on_line(line):
        match = _LOSS_LINE.search(line)
        if match:
            step = (len(losses) + 1) * logging_steps
            losses.append((step, float(match.group(1))))
            epochs.append(float(match.group(2)) * steps / step)     # the whole run's passes, as the trainer counts
            bars[0].update(min(step, steps) - bars[0].n)
            bars[0].set_postfix(loss=match.group(1))

    started = time.perf_counter()
    try:
        peak = _run_olive("fine-tune", [
            "finetune", "--method", "lora", "-m", str(model_dir), "-o", str(tmp / "olive"),
            "--data_name", "json", "--data_files", str(train_file),
            "--text_template", chat_format.text_template(model_dir),
            "--max_seq_len", str(settings["seq"]), "--torch_dtype", settings.get("dtype", "float32"),
            "--lora_r", str(settings["r"]), "--lora_alpha", str(settings["alpha"]),
            "--target_modules", settings.get("targets", PHI3_LORA_TARGETS),
            "--max_steps", str(steps), "--learning_rate", str(settings["lr"]),
            "--per_device_train_batch_size", str(settings["bs"]), "--logging_steps", str(logging_steps),
            # Olive's --max_samples counts blocks and defaults to 256: the LoRA would see only the file's start.
            "--max_samples", str(settings["blocks"]),
            "--save_strategy", "no", "--seed", "0", "--log_level", "1",
            # the same weights either way, so not part of the cache key (see finetune's docstring)
            "--gradient_checkpointing", str(checkpointing(settings))],
            log, expect=tmp / "olive" / "adapter" / "adapter_config.json", on_line=on_line, on_start=on_start)
        bars[0].update(steps - bars[0].n)   # the last steps are not logged when steps % logging_steps != 0
    finally:
        for bar in bars:
            bar.close()
    shutil.move(str(tmp / "olive" / "adapter"), str(tmp / "adapter"))
    shutil.rmtree(tmp / "olive")     # Olive also copies the base model; the adapter is what we keep
    return time.perf_counter() - started, losses, round(epochs[-1], 3) if epochs else 0.0, peak


def export_with_adapter(model: str | Path, adapter: str | Path, precision: str = "int4",
                        execution_provider: str = "cpu", force: bool = False) -> Path:
    """ONNX model + `adapter_weights.onnx_adapter` with Olive auto-opt (model builder). Lab 03.

    The LoRA weights become inputs of the graph instead of constants, so one model can load and
    swap adapters at run time (`og.Adapters`).
    """
    from ..making.tokenizer import keep_source_tokenizer

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise MissingInput(f"{adapter} is not a LoRA adapter folder (no adapter_config.json). Pass the "
                                "`adapter` of labkit.olive.finetune().")
    model_dir = models.resolve_model(model)
    _check_architecture(model_dir)
    providers = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
    if execution_provider not in providers:
        raise InputError(f"execution_provider must be one of {list(providers)}")

    def make(tmp: Path, log: Path) -> dict:
        peak = _run_olive("ONNX export with adapter", [
            "auto-opt", "-m", str(model_dir), "-a", str(adapter), "-o", str(tmp),
            "--device", "gpu" if execution_provider == "cuda" else "cpu", "--provider", providers[execution_provider],
            "--use_model_builder", "--use_ort_genai", "--precision", precision, "--log_level", "1"],
            log, expect=tmp / "adapter_weights.onnx_adapter")
        keep_source_tokenizer(model_dir, tmp)
        stamp_adapter(adapter_file(tmp), adapters.base_fingerprint(tmp))
        return {"base_model": str(model_dir), "adapter": str(adapter), "precision": precision,
                "execution_provider": execution_provider, "peak_rss_bytes": peak}

    return cache.cached_step("olive", f"{model_dir.name}-onnx-{precision}",
                             (model_dir, adapter, precision, execution_provider, _EXPORT_FORMAT), make,
                             info_file="labkit_export.json", label="ONNX export with adapter", force=force).path


def stamp_adapter(adapter: Path, fingerprint: int) -> None:
    """Record the base model's fingerprint in an `.onnx_adapter` (its `model_version` field). Lab 03.

    labkit.generate then refuses the adapter on any other model (see adapters.base_fingerprint)."""
    import onnxruntime

    source = onnxruntime.AdapterFormat.read_adapter(str(adapter))
    stamped = onnxruntime.AdapterFormat()
    stamped.set_adapter_version(source.get_adapter_version())
    stamped.set_model_version(fingerprint)
    stamped.set_parameters(source.get_parameters())
    tmp = adapter.with_name(adapter.name + ".tmp")
    stamped.export_adapter(str(tmp))
    tmp.replace(adapter)


def add_adapter(onnx_dir: Path, train_file: str | Path, steps: int = 600, learning_rate: float = 3e-3,
                force: bool = False, progress: bool = True) -> Path:
    """Train another LoRA on the base model of `onnx_dir` and return an `.onnx_adapter` for it. Lab 04.

    The new adapter is converted for `onnx_dir`'s graph directly (labkit.training.onnx_adapter, checked against
    the adapter Olive exported there); only if that check fails does Olive export the whole model again, and
    the byte-identical `model.onnx` of both exports guarantees the adapter fits `onnx_dir`.
    """
    onnx_dir = Path(onnx_dir)
    source = json.loads((onnx_dir / "labkit_export.json").read_text(encoding="utf-8"))
    source.update(adapter=cache.relocated(source["adapter"]), base_model=cache.relocated(source["base_model"]))
    rank = json.loads((source["adapter"] / "adapter_config.json").read_text(encoding="utf-8"))["r"]
    # The first adapter's dtype, batch and layers: what made it fit this machine (lab 03's full-size recipe)
    info = source["adapter"].parent / "finetune_info.json"
    trained = json.loads(info.read_text(encoding="utf-8"))["settings"]
    layers = len(trained["targets"].split(",")) // 4 if "targets" in trained else None
    tuned = finetune(source["base_model"], steps=steps, lora_r=rank, learning_rate=learning_rate,
                     batch_size=trained["bs"], torch_dtype=trained.get("dtype", "float32"), lora_layers=layers,
                     train_file=train_file, force=force, progress=progress)
    try:
        return onnx_adapter.for_export(onnx_dir, tuned.adapter, force=force)
    except onnx_adapter.AdapterMismatch as err:
        print(f"the adapter cannot be converted for {onnx_dir.name} ({err}): exporting the model again for it")
    other = export_with_adapter(source["base_model"], tuned.adapter, source["precision"],
                                source["execution_provider"], force=force)
    if cache.file_sha256(other / "model.onnx") != cache.file_sha256(onnx_dir / "model.onnx"):
        raise OliveStepError(f"The export for the new adapter produced a different model.onnx than {onnx_dir}; "
                             "the adapter would not fit. Re-export both with the same labkit and Olive versions.")
    return adapter_file(other)


def travel_model(model_dir: str | Path = "", adapter: str | Path = "", steps: int = 600,
                 calibration_samples: int = 128, progress: bool = True) -> tuple[Path, Path | None]:
    """The genai model + adapter lab 04 works on: given, else lab 03's latest, else lab 03's flow run now. Lab 04.

    The fallback is lab 03's own recipe (AWQ on `calibration_samples` travel pairs, LoRA for `steps`, the
    export), so it lands on lab 03's cached outputs whenever lab 03 ran with the same settings on this cache.
    """
    from ..core import results
    from . import awq

    if model_dir:
        model_dir = Path(model_dir)
        found = Path(adapter) if adapter else (adapter_file(model_dir) if adapter_file(model_dir).exists() else None)
        print(f"model: {paths.shown(model_dir)} (given)")
        return model_dir, found
    recorded = results.find("03_olive_awq_lora", "onnx_dir")
    if recorded and Path(recorded).exists():
        print(f"model: {paths.shown(recorded)} (from lab 03's latest run)")
        return Path(recorded), Path(results.find("03_olive_awq_lora", "adapter"))
    print(f"no lab 03 output found: running lab 03's flow (AWQ on {calibration_samples} pairs, {steps} LoRA steps, "
          "the export); cached, so it is made once")
    awq_dir = awq.quantize("tiny", samples=calibration_samples)
    tuned = finetune(awq_dir, steps=steps, progress=progress)
    exported = export_with_adapter(awq_dir, tuned.adapter)
    return exported, adapter_file(exported)


def adapter_file(onnx_dir: Path) -> Path:
    """The `.onnx_adapter` that `export_with_adapter` wrote. Lab 03."""
    return Path(onnx_dir) / "adapter_weights.onnx_adapter"
