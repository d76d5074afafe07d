"""`python -m labkit …` (or the `labkit` command): the course from a terminal.

    labkit course [--only 00 01] [--profile cpu|gpu] [--demo]   run the notebooks into runs/<timestamp>/
    labkit env                                           the environment check of lab 00
    labkit tiny                                          create (or show) the tiny Phi-3
    labkit bench                                         the speed benchmark on a ~160M-param model
    labkit bench-scale [--layers N] [--precisions int4 …]  Phi-3.5-mini at real size (shadow) on this CPU
    labkit bench-peers [--engines ortgenai llamacpp openvino]  the course's builds vs llama.cpp / OpenVINO GenAI
    labkit prefetch [--profile laptop|gpu]                download what a profile needs, print sizes
    labkit export-vision MODEL [--precision P] [--json]    a Phi-3.5-vision export (cached), as lab 02 makes it
    labkit build MODEL [--precision P] [--force] [--json]  one model-builder build (cached), as lab 01 makes it
    labkit gpu-probe                                     is there a usable GPU? (exit 3 if not)
    labkit keep-tokenizer MODEL BUILD...                 the builder CLI's missing step (lab 01)
    labkit exercises [--out DIR]                         attendee copies without solutions -> exercises/
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m labkit` / `labkit`. All labs."""
    os.environ.setdefault("OLIVE_DISABLE_TELEMETRY", "1")
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    course = sub.add_parser("course", help="run the notebooks headless into runs/<timestamp>/")
    course.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 00 01")
    course.add_argument("--profile", default=os.environ.get("LABKIT_PROFILE", "cpu"))
    course.add_argument("--demo", action="store_true", help="small parameters: about a minute on a warm cache")
    env = sub.add_parser("env", help="check this machine for the course")
    env.add_argument("--profile", default=None)
    sub.add_parser("tiny", help="create the tiny Phi-3 (cached) and print where it is")
    bench = sub.add_parser("bench", help="benchmark ORT builds vs PyTorch on a ~160M-param model")
    bench.add_argument("--runs", type=int, default=3)
    scale = sub.add_parser("bench-scale", help="build and run the full-size Phi-3.5-mini shadow on this CPU")
    scale.add_argument("--layers", type=int, default=None,
                       help="measure shadows of N/2 and N layers and extrapolate to 32 (quick)")
    scale.add_argument("--precisions", nargs="+", default=["int4", "int8", "fp32"])
    scale.add_argument("--runs", type=int, default=3)
    scale.add_argument("--vision", action="store_true",
                       help="also export the Phi-3.5-vision shadow and time image prompts (336x336, 1344x1008)")
    scale.add_argument("--out", default=None, help="JSON file (default runs/bench-scale.json)")
    peer = sub.add_parser("bench-peers", help="ONNX Runtime GenAI vs llama.cpp and OpenVINO GenAI (make bench-peers)")
    peer.add_argument("--engines", nargs="+", default=["ortgenai", "llamacpp", "openvino"])
    peer.add_argument("--runs", type=int, default=3)
    peer.add_argument("--new-tokens", type=int, default=64)
    peer.add_argument("--threads", type=int, default=2)
    peer.add_argument("--out", default=None, help="JSON file (default runs/bench-peers.json)")
    pre = sub.add_parser("prefetch", help="download (or, offline, check) the models a profile needs")
    pre.add_argument("--profile", default=os.environ.get("LABKIT_PROFILE", "laptop"))
    one = sub.add_parser("build", help="build a checkpoint with the model builder (labkit.build.build)")
    one.add_argument("model", help="`tiny`, a checkpoint folder or a hub id")
    one.add_argument("--precision", default="int4")
    one.add_argument("--execution-provider", default="cpu")
    one.add_argument("--force", action="store_true", help="rebuild even when a verified build is cached")
    one.add_argument("--json", action="store_true", help="print the result as one JSON line")
    vis = sub.add_parser("export-vision", help="export a Phi-3.5-vision checkpoint (labkit.vision.export)")
    vis.add_argument("model", help="`tiny-vision`, a checkpoint folder or a hub id")
    vis.add_argument("--precision", default="int4")
    vis.add_argument("--force", action="store_true")
    vis.add_argument("--json", action="store_true", help="print the result as one JSON line")
    keep = sub.add_parser("keep-tokenizer", help="restore MODEL's tokenizer class and chat template in builder "
                                                  "output folders, so og.Tokenizer reads them")
    keep.add_argument("model", help="the checkpoint the builds came from: a folder, `tiny` or a hub id")
    keep.add_argument("builds", nargs="+", help="folders written by onnxruntime_genai.models.builder")
    exercises = sub.add_parser("exercises", help="write attendee copies of the labs, solutions removed")
    exercises.add_argument("--out", default=None, help="folder (default: exercises/ in the course folder)")
    sub.add_parser("gpu-probe", help="nvidia-smi plus a real ONNX Runtime session on CUDA (exit 3 if none)")
    args = parser.parse_args(argv)

    if args.command == "course":
        from .course import DEMO_PARAMETERS, NotebookFailed, run_course
        try:
            run_course(args.only, DEMO_PARAMETERS if args.demo else None, profile=args.profile)
        except NotebookFailed as failure:
            print(failure, file=sys.stderr)
            return 1
    elif args.command == "env":
        from .env import report
        table = report(args.profile)
        print(table.to_string())
        return int((table.status == "FAIL").any())
    elif args.command == "tiny":
        from ..making.models import create_tiny, model_card
        path = create_tiny()
        card = model_card(path)
        print(f"{path}\n{card['parameters']:,} parameters, held-out perplexity {card['heldout_perplexity']:.2f} "
              f"(uniform: {card['uniform_perplexity']:.0f})")
    elif args.command == "keep-tokenizer":
        from pathlib import Path

        from ..making.models import resolve_model
        from ..making.tokenizer import keep_source_tokenizer
        missing = [b for b in args.builds if not (Path(b) / "tokenizer_config.json").exists()]
        if missing:
            print(f"error: {', '.join(missing)}: no tokenizer_config.json; pass folders the model builder wrote "
                  "(its -o value).", file=sys.stderr)
            return 2
        source = resolve_model(args.model)
        for folder in args.builds:
            keep_source_tokenizer(source, Path(folder))
            print(f"{folder}: tokenizer class and chat template of {source.name} restored")
    elif args.command == "exercises":
        from .course import write_exercises
        written = write_exercises(args.out)
        print(f"{len(written)} attendee copies (solutions replaced by '# your code here') in {written[0].parent}")
    elif args.command == "gpu-probe":
        from .gpu import NO_GPU_EXIT, probe
        found = probe()
        if not found.ok:
            print(f"error: {found.summary()}", file=sys.stderr)
            return NO_GPU_EXIT
        print(f"GPU: {found.summary()}")
    elif args.command == "bench-scale":
        from pathlib import Path

        from ..measuring.scale import ScaleError, run_bench_scale
        try:
            run_bench_scale(args.layers, tuple(args.precisions), runs=args.runs,
                            out=Path(args.out) if args.out else None, vision=args.vision)
        except ScaleError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif args.command == "bench-peers":
        from pathlib import Path

        from ..measuring.peers import PeerError, default_engines, run_bench_peers
        try:
            run_bench_peers(default_engines(args.engines), runs=args.runs, new_tokens=args.new_tokens,
                            threads=args.threads, out=Path(args.out) if args.out else None)
        except PeerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif args.command == "prefetch":
        from ..making.hub import NotCached, prefetch
        try:
            prefetch(args.profile)
        except NotCached as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif args.command == "build":
        import json

        from ..making.build import BuildError, build
        try:
            result = build(args.model, args.precision, args.execution_provider, force=args.force,
                           progress=not args.json)
        except BuildError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        summary = {"dir": str(result.path), "size_bytes": result.size_bytes, "seconds": round(result.seconds, 2),
                   "cached": result.cached}
        print(json.dumps(summary) if args.json else f"{result.path} ({result.size_bytes / 1e9:.2f} GB, "
              f"{'cached' if result.cached else f'{result.seconds:.0f} s'})")
    elif args.command == "export-vision":
        import json

        from ..core.paths import dir_size
        from ..making.vision_export import export
        folder = export(args.model, args.precision, force=args.force, progress=not args.json)
        print(json.dumps({"dir": str(folder), "size_bytes": dir_size(folder)}) if args.json else folder)
    elif args.command == "bench":
        from ..measuring.bench import run_benchmark
        run_benchmark(runs=args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
