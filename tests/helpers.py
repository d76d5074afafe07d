"""Helpers several test files share."""

import ast
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def notebook_defaults(stem: str) -> dict:
    """The literal defaults of a lab's parameters cell (what `make course` runs with, unless overridden)."""
    notebook = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text())
    cell = next("".join(c["source"]) for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell).body
            if isinstance(node, ast.Assign)}


def makefile_recipe(target: str) -> list[str]:
    """The command a Makefile target runs, with `$(PY)` as this interpreter."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{target}:")))
    command = lines[start + 1].strip().replace("$(PY)", sys.executable)
    return shlex.split(command)


def low_memory(monkeypatch, available_gb: float, total_gb: float):
    """This machine, as sizing sees it, with only `available_gb` of `total_gb` RAM free."""
    from labkit import sizing

    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 4, "total_ram_bytes": int(total_gb * 10**9),
                                                    "available_ram_bytes": int(available_gb * 10**9),
                                                    "free_disk_bytes": 10**12})


def checkpoint_folder(tmp_path, name: str, config: dict):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    return folder


SMI_QUERY = "NVIDIA H100 80GB HBM3, 81559, 580.95.05\n"
SMI_HEADER = "| NVIDIA-SMI 580.95.05    Driver Version: 580.95.05    CUDA Version: 13.0     |\n"


def fake_nvidia_smi(folder: Path) -> Path:
    """An `nvidia-smi` on PATH that answers like a real one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      "case \"$1\" in --query-gpu*) printf '%s' \"$QUERY\";; *) printf '%s' \"$HEADER\";; esac\n")
    script.chmod(0o755)
    return folder
