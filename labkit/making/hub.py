"""What each profile downloads from the Hugging Face hub, Microsoft's published ONNX builds, and `make prefetch`.

A workshop venue's Wi-Fi should not be the bottleneck: `make prefetch PROFILE=laptop` (or `gpu`)
downloads exactly what that profile's labs read — the checkpoints and, for `laptop`, the CPU INT4
folder of `microsoft/Phi-3.5-mini-instruct-onnx` — and prints their sizes. Offline
(`HF_HUB_OFFLINE=1`), it checks the local cache instead and names what is missing with the
command that fetches it. Everything goes through `huggingface_hub.snapshot_download`, so files
land in the standard cache (`HF_HOME` / `HF_HUB_CACHE`) every tool reads. Lab 00 (and lab 01).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from ..core.errors import InputError, LabkitError
from . import models

PUBLISHED_ONNX = {
    # The CPU INT4 builds Microsoft publishes next to the checkpoints: Phi-3.5-mini's AWQ in blocks of 128,
    # Phi-4-mini's round-to-nearest in blocks of 32, both with accuracy level 4 (int8 activations).
    "cpu-int4": ("microsoft/Phi-3.5-mini-instruct-onnx", "cpu_and_mobile/cpu-int4-awq-block-128-acc-level-4"),
    "phi4-cpu-int4": ("microsoft/Phi-4-mini-instruct-onnx", "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"),
}
PUBLISHED_FOR = {models.HUB_IDS["mini"]: "cpu-int4", models.HUB_IDS["phi4-mini"]: "phi4-cpu-int4"}
PUBLISHED_LABELS = {"cpu-int4": "published int4 (AWQ, b128)", "phi4-cpu-int4": "published int4 (RTN, b32)"}


@dataclass(frozen=True)
class Download:
    """One repository (or a folder of it) a profile needs. Lab 00 (and lab 01)."""

    repo: str
    folder: str | None = None      # only this sub-folder (the published ONNX repos hold many variants)
    approx_gb: float = 0.0         # as listed on the hub, for planning before any download

    @property
    def command(self) -> str:
        """The `hf download` command that fetches it."""
        include = f' --include "{self.folder}/*"' if self.folder else ""
        return f"hf download {self.repo}{include}"

    def allow_patterns(self) -> list[str] | None:
        return [f"{self.folder}/*"] if self.folder else None


# Phi-4-mini, a model choice of labs 01 and 04 in the laptop and gpu profiles (and lab 03 on a GPU):
# `make prefetch PROFILE=laptop MODEL=microsoft/Phi-4-mini-instruct` adds these.
MODEL_DOWNLOADS = {
    models.HUB_IDS["phi4-mini"]: {
        "laptop": (Download(models.HUB_IDS["phi4-mini"], approx_gb=7.7),
                   Download(*PUBLISHED_ONNX["phi4-cpu-int4"], approx_gb=4.9)),
        "gpu": (Download(models.HUB_IDS["phi4-mini"], approx_gb=7.7),),
    },
}

PROFILE_DOWNLOADS = {
    "cpu": (),
    "laptop": (Download(models.HUB_IDS["mini"], approx_gb=7.6), Download(models.HUB_IDS["vision"], approx_gb=8.3),
               Download(*PUBLISHED_ONNX["cpu-int4"], approx_gb=2.8)),
    "gpu": (Download(models.HUB_IDS["mini"], approx_gb=7.6), Download(models.HUB_IDS["vision"], approx_gb=8.3)),
}


class NotCached(LabkitError, FileNotFoundError):
    """A hub download that is not in the local cache while offline; the message has the command. Lab 00."""


def _cache_dir() -> str | None:
    import os

    return os.environ.get("HF_HUB_CACHE")   # read per call: tests and shared servers point it elsewhere


def _local_folder(item: Download) -> Path:
    """The cached snapshot folder of `item` (its sub-folder when it has one), or `NotCached`. Lab 00."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(item.repo, allow_patterns=item.allow_patterns(), local_files_only=True,
                                      cache_dir=_cache_dir()))
    except LocalEntryNotFoundError:
        raise NotCached(f"{item.repo} is not in the local Hugging Face cache. On a machine with network run "
                        f"`{item.command}` (or `make prefetch`).") from None
    folder = root / item.folder if item.folder else root
    if not folder.is_dir() or not any(folder.iterdir()):
        raise NotCached(f"{item.repo} is cached without {item.folder or 'its files'}. Run `{item.command}`.")
    return folder


def _fetch(item: Download) -> Path:
    """Download `item` into the standard cache (resumes; a no-op when complete) and return its folder. Lab 00."""
    from huggingface_hub import snapshot_download

    try:
        root = Path(snapshot_download(item.repo, allow_patterns=item.allow_patterns(), cache_dir=_cache_dir()))
    except Exception as err:   # no network, hub down, gated repo: say which and how to get it
        first_line = (str(err).splitlines() or [""])[0][:160]
        raise NotCached(f"{item.repo}: {type(err).__name__}: {first_line}") from None
    return root / item.folder if item.folder else root


def downloads(profile: str, model: str | None = None) -> tuple[Download, ...]:
    """What `profile` downloads, plus what `model` (another model choice, e.g. Phi-4-mini) adds. Lab 00."""
    from ..core.profiles import get_profile

    name = get_profile(profile).name
    if model is None:
        return PROFILE_DOWNLOADS[name]
    if model not in MODEL_DOWNLOADS:
        raise InputError(f"prefetch knows no extra downloads for {model!r}; choose one of: "
                         f"{', '.join(MODEL_DOWNLOADS)} (the profile's own models need no --model).")
    extra = MODEL_DOWNLOADS[model].get(name)
    if extra is None:
        raise InputError(f"{model} is a model choice of the laptop and gpu profiles, not {name}.")
    return PROFILE_DOWNLOADS[name] + extra


def prefetch(profile: str, offline: bool | None = None, out=print, model: str | None = None) -> list[dict]:
    """Download (or, offline, check) everything `profile` needs (and `model`, when given: `downloads`); print and
    return folder sizes. Lab 00.

    Offline and something missing: raises `NotCached` listing every missing item's command."""
    from ..core.profiles import get_profile

    name = get_profile(profile).name
    items = downloads(name, model)
    offline = models.is_offline() if offline is None else offline
    rows, missing, reasons = [], [], []
    for item in items:
        try:
            folder = _local_folder(item) if offline else _fetch(item)
        except NotCached as err:
            missing.append(item)
            reasons.append(str(err))
            continue
        size = paths.dir_size(folder)
        rows.append({"repo": item.repo, "folder": str(folder), "size_gb": round(size / 1e9, 2)})
        out(f"{item.repo}{'/' + item.folder if item.folder else ''}: {size / 1e9:.2f} GB in {folder}")
    if missing:
        commands = "\n".join(f"  {item.command}" for item in missing)
        why = ("are not in the local Hugging Face cache, and this machine is offline (HF_HUB_OFFLINE=1)" if offline
               else f"could not be downloaded (first: {reasons[0]})")
        again = f"make prefetch PROFILE={name}" + (f" MODEL={model}" if model else "")
        raise NotCached(f"The {name} profile needs {len(missing)} download(s) that {why}. With network, run "
                        f"`{again}`, or:\n{commands}")
    if not rows:
        out(f"The {name} profile downloads nothing: every model is created locally.")
    else:
        out(f"{sum(r['size_gb'] for r in rows):.2f} GB in all for the {name} profile.")
    return rows


def published_onnx(variant: str = "cpu-int4") -> Path:
    """Microsoft's published ONNX build (`PUBLISHED_ONNX`) from the local cache, ready for `og.Model`. Lab 01."""
    if variant not in PUBLISHED_ONNX:
        raise InputError(f"Unknown published variant {variant!r}; choose one of: {', '.join(PUBLISHED_ONNX)}.")
    return _local_folder(Download(*PUBLISHED_ONNX[variant]))


def published_variant(model: str) -> str | None:
    """The key of Microsoft's published CPU INT4 build of `model` (a hub id), or None when it has none. Lab 01."""
    return PUBLISHED_FOR.get(str(model))
