"""labkit — the companion package of the Phi on-device lab.

Every notebook is a little narrative plus one to three calls into labkit. The package is cut in
layers; a layer imports only the layers above it in this list (tests/test_layering.py checks it):

    core        paths, cache, errors, profiles, results, data,     folders, the verified cache, the course's data,
                sizing, allocator, children                        the errors users see, glibc's allocator,
                                                                   child processes' environment
    runtime     loop, inputs, adapters, guidance, generate,        og: the token loop, checked inputs, LoRA
                chat_panel, images                                 adapters, structured output, chat, images
    making      models, tokenizer, build, lean, last_position,     checkpoints and their ONNX builds
                shadow, hub, vision_encoder, vision_checkpoint,
                vision_export
    measuring   bench, judge, scale, phi4_mini, memwatch, peers,   size, speed, quality and memory of what was made
                peer_worker, kernels, vision_verify, report
    training    awq, chat_format, olive, olive_seeded,             AWQ and LoRA fine-tuning (measured with `measuring`)
                onnx_adapter, recipes, bf16_linear
    workshop    course, checks, translations, translation_quality,  the notebooks (in five languages), exercises, the
                plan, env, gpu, attendees, server, cli             `labkit` command and the workshop server (JupyterHub)

Notebooks import modules by their short name, `from labkit import build, generate`: the names
below resolve to the module in its layer on first use. ARCHITECTURE.md draws the layers.
"""

from __future__ import annotations

import importlib

LAYERS = {
    "core": ["paths", "cache", "errors", "profiles", "results", "data", "sizing", "allocator",
             "children"],
    "runtime": ["loop", "inputs", "adapters", "guidance", "generate", "chat_panel", "images"],
    "making": ["models", "tokenizer", "build", "lean", "last_position", "shadow", "hub", "vision_encoder",
               "vision_checkpoint", "vision_export"],
    "measuring": ["bench", "bound", "judge", "scale", "phi4_mini", "memwatch", "peers", "peer_worker", "kernels",
                  "vision_verify", "report"],
    "training": ["awq", "chat_format", "olive", "olive_seeded", "onnx_adapter", "recipes", "bf16_linear",
                 "full_size_cost"],
    "workshop": ["course", "checks", "translations", "translation_quality", "plan", "env", "gpu", "attendees",
                 "server", "cli"],
}
_HOME = {module: layer for layer, modules in LAYERS.items() for module in modules}

__version__ = "0.1.0"
__all__ = ["start_lab", "get_profile", "LAYERS", "__version__", *_HOME]


def __getattr__(name: str):
    """`labkit.build` -> `labkit.making.build`, imported on first use (so `import labkit` stays light)."""
    if name in _HOME:
        module = importlib.import_module(f"{__name__}.{_HOME[name]}.{name}")
        globals()[name] = module
        return module
    if name == "start_lab":
        return importlib.import_module(f"{__name__}.workshop.course").start_lab
    if name == "get_profile":
        return importlib.import_module(f"{__name__}.core.profiles").get_profile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
