"""`python -m labkit …` (or the `labkit` command): the course from a terminal.

    labkit course [--only 00 01] [--profile cpu|gpu] [--demo]   run the notebooks into runs/<timestamp>/
    labkit env                                           the environment check of lab 00
    labkit tiny                                          create (or show) the tiny Phi-3
    labkit bench                                         the speed benchmark on a ~160M-param model
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
        from .models import create_tiny, model_card
        path = create_tiny()
        card = model_card(path)
        print(f"{path}\n{card['parameters']:,} parameters, held-out perplexity {card['heldout_perplexity']:.2f} "
              f"(uniform: {card['uniform_perplexity']:.0f})")
    elif args.command == "keep-tokenizer":
        from pathlib import Path

        from .build import keep_source_tokenizer
        from .models import resolve_model
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
    elif args.command == "bench":
        from .bench import run_benchmark
        run_benchmark(runs=args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
