"""Download every locked wheel for a platform, for installs without network: `make wheelhouse PLATFORM=…`.

    python tools/wheelhouse.py --platform linux            # -> wheelhouse/linux/, prints the total size
    python tools/wheelhouse.py --platform windows --python-version 3.13   # attendees' Python 3.13
    python tools/wheelhouse.py --platform windows --print  # just show the pip commands
    python tools/install.py --wheelhouse wheelhouse/linux  # at the venue: no network needed

The same hashed locks as `make install` (pip checks every file's hash on download and again on install),
fetched for another platform with `pip download --platform … --only-binary :all:`. Stdlib only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements" / "locks"

# platform -> (locks in install order, pip --platform tags: newest first)
PLATFORMS = {
    "linux": (["torch-cpu-linux", "cpu-linux"],
              ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
               "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64", "linux_x86_64"]),
    "macos": (["cpu-macos"], ["macosx_14_0_arm64"]),      # pip adds the older macOS versions and universal2
    "windows": (["cpu-windows"], ["win_amd64"]),
}


def only(lock_text: str, packages: list[str]) -> str:
    """The lock with just `packages` (their lines, hashes and comments), options kept: a quick wheelhouse."""
    keep, current = [], None
    for line in lock_text.splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            current = line.split("==")[0].lower()
        elif line.startswith("-"):
            current = None
            keep.append(line)
            continue
        if current in packages:
            keep.append(line)
    return "\n".join(keep) + "\n"


def commands(platform: str, out: Path, packages: list[str] | None = None, tmp: Path | None = None,
             python: str = "3.11") -> list[list[str]]:
    """The pip download command for each lock of `platform` and Python version."""
    locks, tags = PLATFORMS[platform]
    folder = LOCKS / f"py{python}"
    if not folder.is_dir():
        raise SystemExit(f"no locks for Python {python} (requirements/locks/py*/ has the supported ones)")
    result = []
    for name in locks:
        lock = folder / f"{name}.txt"
        if not lock.exists():   # torch-cpu-linux: absent where the Linux lock pins PyPI's torch
            continue
        if packages:
            if not only(lock.read_text(encoding="utf-8"), packages).strip(" \n-"):
                continue
            lock = Path(tmp or tempfile.mkdtemp()) / lock.name
            lock.write_text(only((folder / f"{name}.txt").read_text(encoding="utf-8"), packages), encoding="utf-8")
        result.append([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                       "--require-hashes", "--no-deps", "--only-binary", ":all:", "--python-version", python,
                       "--implementation", "cp", *[a for t in tags for a in ("--platform", t)],
                       "-r", str(lock), "-d", str(out)])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="linux")
    parser.add_argument("--out", type=Path, help="default: wheelhouse/<platform>-py<version>")
    parser.add_argument("--python-version", default="3.11", help="the attendees' Python (3.11, 3.12, 3.13)")
    parser.add_argument("--packages", nargs="+", help="only these locked packages (a quick check of the command)")
    parser.add_argument("--print", action="store_true", help="print the pip commands instead of running them")
    args = parser.parse_args(argv)
    out = args.out or REPO / "wheelhouse" / f"{args.platform}-py{args.python_version}"
    with tempfile.TemporaryDirectory() as tmp:
        planned = commands(args.platform, out, [p.lower() for p in args.packages or []], Path(tmp),
                           args.python_version)
        for command in planned:
            if args.print:
                print(" ".join(command))
                continue
            out.mkdir(parents=True, exist_ok=True)
            if subprocess.run(command).returncode:
                print(f"error: pip could not download the {args.platform} wheels (command above).", file=sys.stderr)
                return 1
    if not args.print:
        wheels = list(out.glob("*.whl"))
        print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e9:.2f} GB in {out}\n"
              f"install at the venue with Python {args.python_version}: python tools/install.py --wheelhouse {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
