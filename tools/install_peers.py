"""Create the peer engines' environments for `make bench-peers`: .venv-peers/llamacpp and .venv-peers/openvino.

    python tools/install_peers.py                 # both
    python tools/install_peers.py --engine openvino

Each engine gets its own virtual environment so the course's pinned `.venv` is never touched. Pins are in
requirements/peers/<engine>.txt. A stamp (the pins' hash) makes a second run instant; a failed install
leaves no stamp, so the next run starts again. For llama.cpp it also unpacks the HF -> GGUF converter
(`convert_hf_to_gguf.py`, its `conversion` package and `gguf-py`), which ships only inside the
llama-cpp-python sdist, into .venv-peers/llamacpp/llama.cpp/.

Stdlib only: it runs with the Python that creates the environments.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "requirements" / "peers"
VENVS = REPO / ".venv-peers"
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def unpack_converter(python: Path, target: Path) -> None:
    """llama.cpp's converter from the llama-cpp-python sdist pinned in llamacpp.txt."""
    pin = next(line.strip() for line in (PINS / "llamacpp.txt").read_text(encoding="utf-8").splitlines()
               if line.startswith("llama-cpp-python=="))
    with tempfile.TemporaryDirectory() as tmp:
        run([str(python), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp, pin])
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staging = Path(tmp) / "unpacked"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers()
                       if "/vendor/llama.cpp/" in m.name
                       and m.name.split("/vendor/llama.cpp/", 1)[1].startswith(CONVERTER_PARTS)]
            archive.extractall(staging, members=members, filter="data")
        source = next(staging.glob("*/vendor/llama.cpp"))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    run([str(python), "-m", "pip", "install", "-q", str(target / "gguf-py")])


def install(engine: str, python: str) -> Path:
    pins = PINS / f"{engine}.txt"
    venv = VENVS / engine
    stamp = venv / ".labkit-pins"
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest:
        print(f"{venv}: up to date")
        return venv
    stamp.unlink(missing_ok=True)
    run([python, "-m", "venv", str(venv)])
    vpy = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([str(vpy), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    if engine == "llamacpp":
        print("compiling llama-cpp-python: about 11 minutes on 2 cores the first time (pip caches the wheel)")
    run([str(vpy), "-m", "pip", "install", "-r", str(pins)])
    if engine == "llamacpp":
        unpack_converter(vpy, venv / "llama.cpp")
    if engine == "openvino":
        run([str(vpy), "-m", "pip", "uninstall", "-y", "-q", "torchvision"])
    stamp.write_text(digest, encoding="utf-8")
    return venv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["llamacpp", "openvino"], action="append")
    parser.add_argument("--python", default=sys.executable, help="Python that creates the environments")
    args = parser.parse_args()
    for engine in args.engine or ["openvino", "llamacpp"]:
        try:
            install(engine, args.python)
        except subprocess.CalledProcessError as err:
            sys.exit(f"Installing the {engine} environment failed ({err}). Nothing is marked installed; "
                     f"fix the cause above and run `make bench-peers` again.")


if __name__ == "__main__":
    main()
