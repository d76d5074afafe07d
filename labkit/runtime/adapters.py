"""LoRA adapters on an onnxruntime-genai model: read, checked against their base model, activated. Lab 04.

An `.onnx_adapter` file (lab 03's export) only fits the model it was exported with. ONNX Runtime
notices a mismatch only mid-generation, or not at all when another model has the same layer names:
`activate` checks the adapter's parameter names and base fingerprint first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..core import cache
from ..core.errors import MissingInput
from .inputs import GenerationError, model_config

_adapters: dict[str, tuple] = {}   # model folder -> (og.Adapters, {adapter file: name})


def activate(generator, model_dir: str, model, adapter: str | Path) -> None:
    """Load `adapter` (an .onnx_adapter file) once per model and make it the active one. Lab 04."""
    import onnxruntime_genai as og

    adapter = Path(adapter)
    adapters, names = _adapters.setdefault(model_dir, (og.Adapters(model), {}))
    if str(adapter) not in names:
        _check_adapter_fits(model_dir, adapter)
        names[str(adapter)] = f"adapter{len(names)}"
        adapters.load(str(adapter), names[str(adapter)])
    generator.set_active_adapter(adapters, names[str(adapter)])


def read_adapter(adapter: str | Path):
    """`onnxruntime.AdapterFormat` of an `.onnx_adapter` file, or a GenerationError naming the file. Lab 04.

    og and ONNX Runtime report a bad file as "lora adapter format verification" without its name."""
    import onnxruntime

    adapter = Path(adapter)
    made_by = "Lab 03 writes adapter_weights.onnx_adapter next to its model.onnx (labkit.olive.export_with_adapter)."
    if adapter.is_dir():
        what = "a PEFT adapter folder (what `olive finetune` writes)" if (adapter / "adapter_config.json").exists() \
            else "a folder"
        raise GenerationError(f"Adapter {adapter} is {what}; onnxruntime-genai loads the .onnx_adapter file an "
                              f"export writes. {made_by}")
    if not adapter.is_file():
        raise MissingInput(f"Adapter {adapter} does not exist. {made_by}")
    try:
        return onnxruntime.AdapterFormat.read_adapter(str(adapter))
    except RuntimeError:
        size = adapter.stat().st_size
        raise GenerationError(f"Adapter {adapter} ({size:,} bytes) is not a readable .onnx_adapter file (empty, "
                              f"truncated or another format). Export it again. {made_by}") from None


def base_fingerprint(model_dir: str | Path) -> int:
    """A 31-bit fingerprint of a folder's decoder weights (its ONNX file and external data). Lab 03.

    Lab 03's export records it in each adapter (the adapter format's `model_version`); an adapter is only
    loaded on the model it was exported with. Files over 16 MB count by sampled blocks (cache.sampled_sha256)."""
    folder = Path(model_dir)
    decoder = folder / model_config(folder)["decoder"]["filename"]
    digest = hashlib.sha256()
    for part in (decoder, decoder.with_name(decoder.name + ".data")):
        if part.is_file():
            big = part.stat().st_size > cache.HASH_LIMIT
            digest.update((cache.sampled_sha256(part) if big else cache.file_sha256(part)).encode())
    return int(digest.hexdigest()[:8], 16) & 0x7FFFFFFF or 1


def _check_adapter_fits(model_dir: str | Path, adapter: str | Path) -> None:
    """Fail, naming the adapter's own model, unless the adapter was exported with the model in `model_dir`. Lab 04.

    Two checks: its LoRA parameters are inputs of the decoder (else ONNX Runtime fails mid-generation with
    `Invalid input name: …lora_B.MatMul.weight_scales`), and its base fingerprint is this model's (else an
    adapter of another model with the same layer names would load and silently change the answers). The
    fingerprint is the one recorded at export, else that of the model in the adapter's own folder; an adapter
    with neither is checked by its parameter names only.
    """
    import onnx

    adapter, folder = Path(adapter), Path(model_dir)
    fmt = read_adapter(adapter)
    wanted = set(fmt.get_parameters())
    decoder = model_config(folder)["decoder"]["filename"]
    graph = onnx.load(str(folder / decoder), load_external_data=False).graph
    missing = sorted(wanted - {i.name for i in graph.input})
    home = adapter.parent if (adapter.parent / "genai_config.json").exists() else None
    belongs = f"It was exported with the model in {home}: load that folder." if home else \
        "Use the model folder it was exported with (Olive auto-opt writes both into one folder, lab 03)."
    if missing:
        raise GenerationError(f"Adapter {adapter} does not belong to the model in {folder}: {len(missing)} of its "
                              f"{len(wanted)} LoRA parameters (e.g. {missing[0]}) are not inputs of "
                              f"{decoder}. {belongs}")
    same_folder = home is not None and home.resolve() == folder.resolve()
    base = fmt.get_model_version() or (base_fingerprint(home) if home and not same_folder else None)
    if base is not None and base != base_fingerprint(folder):
        raise GenerationError(f"Adapter {adapter} was exported with another model than the one in {folder} (same "
                              f"layer names, different weights: base fingerprint {base:#010x}, this model's "
                              f"{base_fingerprint(folder):#010x}); its answers here would be wrong. {belongs}")


def release(model_dir: str | None = None) -> None:
    """Forget the adapters loaded on one model (default: on all), before it is freed. Lab 04."""
    if model_dir is None:
        _adapters.clear()
    else:
        _adapters.pop(model_dir, None)
