"""The run's `results.json`: every lab appends what it measured under its own key, in one typed schema.

`SCHEMA` says what each lab records (a `TypedDict` per lab); `record` refuses a key or a type the
schema does not know, so the notebooks, the report and the tests agree on one shape.
Taught in lab 01 (the first lab that measures something).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypedDict, get_origin, get_type_hints

from . import paths
from .errors import LabkitError

# What bench.compare measures for one build (lab 01); the report's table columns.
BuildMeasures = TypedDict("BuildMeasures", {
    "size_mb": float, "load_s": float, "prefill_tok_s": float, "decode_tok_s": float, "perplexity": float,
    "agreement_fp32": float, "perplexity_vs_fp32_%": float})
BuildMeasures.__doc__ = "What bench.compare measures for one build. Lab 01."

# One row of lab 03's RTN-vs-AWQ comparison (kl_vs_rtn is NaN on the RTN rows).
RtnAwqRow = TypedDict("RtnAwqRow", {
    "model": str, "method": str, "perplexity": float, "fp32 perplexity": float, "kl_x1e3": float, "size_mb": float,
    "fp32 size_mb": float, "kl_vs_rtn": float})
RtnAwqRow.__doc__ = "One row of the RTN-vs-AWQ comparison. Lab 03."


class LabRun(TypedDict):
    """What every lab records about how it ran (`Lab.record` adds it). All labs."""

    profile: str           # cpu, laptop or gpu
    shadows: bool          # True: the Phi-3.5 ids were random-weight shadows (LABKIT_SHADOWS=1)


class Environment(LabRun):
    """What the environment check records. Lab 00."""

    environment_ok: bool
    model: dict            # models.describe()
    gpu: dict              # gpu.GpuProbe.as_dict()


class Builds(LabRun):
    """What the builds and their measurements record. Lab 01."""

    model: str
    execution_provider: str
    reference: str
    builds: dict[str, BuildMeasures]
    build_seconds: dict[str, float]
    paths: dict[str, str]
    published_vs_yours: dict   # laptop profile: Microsoft's published CPU INT4 build beside yours ({} elsewhere)
    phi4_vs_phi35: dict        # bench-scale's Phi-4-mini beside Phi-3.5-mini at real size (phi4_mini.table)


class VisionExport(LabRun):
    """What the vision export and its checks record. Lab 02."""

    model: str
    execution_provider: str
    exports: dict[str, str]
    encoder: str                          # the image encoder's weights in `exports`: int8 or fp32
    fp32_encoder_exports: dict[str, str]  # the same exports with the fp32 encoder (the int8 ones are made from them)
    encoders: dict         # vision_verify.compare_encoders(), or {"skipped": ...} when the encoder is fp32
    verify: dict           # vision_verify.verify(), on the fp32-encoder export
    qa: dict[str, dict]
    two_images_tokens: int


class OliveFlow(LabRun):
    """What AWQ, LoRA and the adapter export record. Lab 03."""

    execution_provider: str
    model: str
    awq_dir: str
    onnx_dir: str
    adapter: str
    rtn_vs_awq: list[RtnAwqRow]          # on the tiny model when lab 03 trains Phi-3.5-mini on a laptop
    full_size_recipe: dict               # the settings used when it does (full_size_training), else {}
    steps: list[dict]                    # AWQ, fine-tune, export: minutes, peak memory GB, made or cached
    awq: dict                            # calibration_samples, grid, dtype
    finetune: dict
    onnx_eval_perplexity: dict[str, float]
    paraphrase_rates: dict[str, dict]    # base / travel adapter -> city_named, fact_stated, questions


class Inference(LabRun):
    """What the generate() lab records. Lab 04."""

    model_dir: str                       # the model the adapters belong to (lab 03's)
    chat_model_dir: str                  # the model sections 1-4, 8 and 9 chat with (laptop: lab 01's INT4 build)
    adapters: dict[str, str]
    overhead: dict[str, float]
    search_options: dict[str, str]
    image_reply_tokens: int
    first_reply: dict
    sentence_shares: dict[str, float]    # brief: one sentence, travel: two or more
    followup_rates: dict[str, float]     # first_names_city, followup_keeps_city, followup_states_fact, chats
    chat_demo: list[dict]                # section 4's turns: message, answer
    panel_answers: list[str]             # the panel's answers to fixed_prompts (empty when interactive)
    structured: dict                     # rates (with / without guidance), season_right, tool_calls_right, json_adapter


class Report(LabRun):
    """What the report records. Lab 05."""

    variants: int
    headline: dict


class Course(TypedDict):
    """What `labkit course` records about the run. All labs."""

    profile: str
    shadows: bool
    notebook_seconds: dict[str, float]
    peak_rss_bytes: dict[str, int]       # each notebook's kernel and every process it started, sampled
    memory_limit_bytes: int              # what this run's processes could use (a cgroup limit, else RAM); 0: unknown
    exercises: bool                      # False: each lab stopped before its "Your turn" section
    cold_cache: bool                     # ran on an empty model cache (`--cold-cache`): a first run
    cache_bytes: dict[str, int]          # on a cold cache: what each notebook added to it
    cache_bytes_at_start: int            # what earlier runs had left in the model cache (0 on a cold cache)
    language: str                        # the labs' language: en, or es, pt, zh, ko (`--lang`)


SCHEMA: dict[str, type] = {
    "00_environment_check": Environment, "01_builder_quantization": Builds, "02_vision_export": VisionExport,
    "03_olive_awq_lora": OliveFlow, "04_inference": Inference, "05_results": Report, "course": Course,
}


class ResultsError(LabkitError, ValueError):
    """A value that does not fit results.SCHEMA; the message names the lab, the key and the fix. All labs."""


def check(lab: str, values: dict, complete: bool = False) -> None:
    """Raise ResultsError unless `values` fit `SCHEMA[lab]` (all keys present when `complete`). All labs."""
    if lab not in SCHEMA:
        raise ResultsError(f"No results schema for {lab!r}; known: {', '.join(SCHEMA)}. Add one to labkit.results.")
    hints = get_type_hints(SCHEMA[lab])
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ResultsError(f"{lab} records {unknown}, which labkit.results.SCHEMA does not have: add them to "
                           f"{SCHEMA[lab].__name__} (so the report and the tests know them) or drop them.")
    for key, value in values.items():
        expected = get_origin(hints[key]) or hints[key]
        if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ResultsError(f"{lab}.{key} must be {expected.__name__}, got {type(value).__name__}: {value!r:.80}")
    missing = sorted(set(hints) - set(values)) if complete else []
    if missing:
        raise ResultsError(f"{lab} did not record {missing}.")


def _results_path() -> Path:
    """The current run's results.json. All labs."""
    return paths.run_dir() / "results.json"


def read(path: Path | None = None) -> dict:
    """The results recorded so far (empty when none). All labs."""
    path = Path(path) if path else _results_path()
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def record(lab: str, values: dict, path: Path | None = None) -> Path:
    """Check `values` against the schema, merge them into results.json under `lab` (atomically). All labs."""
    check(lab, values)
    path = Path(path) if path else _results_path()
    data = read(path)
    data.setdefault(lab, {}).update(values)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def find(lab: str, key: str, profile: str | None = None):
    """What `lab` recorded under `key` in this run's results.json, else in `runs/latest`'s (or None). All labs.

    With `profile`, only a record of a run in that profile counts (a laptop run must not take the cpu course's
    tiny-model outputs from `runs/latest`)."""
    latest = paths.latest_run()
    for path in (_results_path(), *([latest / "results.json"] if latest else [])):
        record = read(path).get(lab, {}) if path.exists() else {}
        if profile is not None and record.get("profile", "cpu") != profile:
            continue
        if record.get(key) is not None:
            return record[key]
    return None
