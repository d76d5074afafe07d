"""`python -m labkit …` (or the `labkit` command): the course from a terminal.

    labkit [--debug] COMMAND …                            --debug: a traceback instead of the one-line error
    labkit course [--only 00 01] [--profile cpu|laptop|gpu] [--demo | --parameters FILE] [--run-dir DIR] [--sheet F]
                  [--full-size-training] [--no-exercises] [--cold-cache] [--lang es|pt|zh|ko]
                                                         run the notebooks into runs/<timestamp>/
    labkit env                                           the environment check of lab 00
    labkit tiny                                          create (or show) the tiny Phi-3
    labkit bench                                         the speed benchmark on a ~160M-param model
    labkit bench-scale [--layers N] [--precisions int4 …]  Phi-3.5-mini at real size (shadow) on this CPU
    labkit bench-peers [--engines ortgenai llamacpp openvino]  the course's builds vs llama.cpp / OpenVINO GenAI
    labkit bench-recipes [--quick] [--every N] [--out F]   lab 03's full-size recipe on the course model: quality
    labkit bench-training [--quick] [--out F]             lab 03's full-size AWQ and LoRA: minutes on this CPU
    labkit prefetch [--profile laptop|gpu] [--model ID]   download what a profile (and a model choice) needs
    labkit export-vision MODEL [--precision P] [--encoder E] [--json]
                                                         a Phi-3.5-vision export (cached), as lab 02 makes it
    labkit build MODEL [--precision P] [--force] [--json]  one model-builder build (cached), as lab 01 makes it
    labkit gpu-probe                                     is there a usable GPU? (exit 3 if not)
    labkit keep-tokenizer MODEL BUILD...                 the builder CLI's missing step (lab 01)
    labkit exercises [--out DIR] [--keep] [--lang L]     attendee copies without solutions -> exercises/[L/]
    labkit translations [--lang L …] [--write | --update | --check]
                                                         stale and missing translations; generate the labs in L
    labkit hub [--port 8000] [--profile cpu] [--seats N] [--lang L]
                                                         the workshop server: JupyterHub, one Unix user each (root)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from ..core.errors import LabkitError
from ..core.profiles import PROFILES

USAGE = 2         # a mistake in what was asked, or a missing or damaged input: the message names the fix
INTERRUPTED = 130


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# ------------------------------------------------------------------ one handler per subcommand
def _course(args) -> int:
    from ..core.paths import read_json
    from .course import DEMO_PARAMETERS, NotebookFailed, run_course
    parameters = DEMO_PARAMETERS if args.demo else None
    if args.parameters:
        try:
            parameters = read_json(Path(args.parameters), "write it as {\"NN_notebook\": {\"name\": value}}")
        except (FileNotFoundError, ValueError) as err:
            return _error(str(err), USAGE)
    if args.full_size_training:
        if args.profile != "laptop":
            return _error("--full-size-training is the laptop profile's option (the gpu profile always trains "
                          "Phi-3.5-mini): add --profile laptop.", USAGE)
        lab03 = {**(parameters or {}).get("03_olive_awq_lora", {}), "full_size_training": True}
        parameters = {**(parameters or {}), "03_olive_awq_lora": lab03}
    try:
        run_dir = run_course(args.only, parameters, profile=args.profile,
                             run_dir=Path(args.run_dir) if args.run_dir else None, exercises=not args.no_exercises,
                             cold=args.cold_cache, lang=args.lang)
    except NotebookFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    if args.sheet:
        from ..core.paths import write_json_atomic
        from .plan import run_sheet, sheet_markdown, training_sheet_markdown

        sheet = run_sheet(run_dir)
        print(f"run sheet: {write_json_atomic(Path(args.sheet), sheet)}\n{sheet_markdown(sheet)}")
        if "training" in sheet:
            print(training_sheet_markdown(sheet))
    return 0


def _env(args) -> int:
    from .env import report
    table = report(args.profile)
    print(table.to_string())
    return int((table.status == "FAIL").any())


def _tiny(args) -> int:
    from ..making.models import create_tiny, model_card
    path = create_tiny()
    card = model_card(path)
    print(f"{path}\n{card['parameters']:,} parameters, held-out perplexity {card['heldout_perplexity']:.2f} "
          f"(uniform: {card['uniform_perplexity']:.0f})")
    return 0


def _bench(args) -> int:
    from ..measuring.bench import run_benchmark
    run_benchmark(runs=args.runs)
    return 0


def _bench_scale(args) -> int:
    from ..measuring.scale import run_bench_scale
    run_bench_scale(args.layers, tuple(args.precisions), runs=args.runs,
                    out=Path(args.out) if args.out else None, vision=args.vision, phi4=args.phi4)
    return 0


def _bench_recipes(args) -> int:
    from ..training.recipes import run_bench_recipes
    run_bench_recipes(quick=args.quick, every=args.every, out=Path(args.out) if args.out else None)
    return 0


def _bench_training(args) -> int:
    from ..training.full_size_cost import run_bench_training
    run_bench_training(quick=args.quick, out=Path(args.out) if args.out else None)
    return 0


def _bench_peers(args) -> int:
    from ..measuring.peers import default_engines, run_bench_peers
    run_bench_peers(default_engines(args.engines), runs=args.runs, new_tokens=args.new_tokens,
                    threads=args.threads, out=Path(args.out) if args.out else None)
    return 0


def _prefetch(args) -> int:
    from ..making.hub import prefetch
    prefetch(args.profile, model=args.model)
    return 0


def _key_values(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; anything else is refused, naming the fix."""
    from ..core.errors import InputError

    bad = [item for item in items if "=" not in item or item.startswith("=")]
    if bad:
        raise InputError(f"--extra-options {' '.join(bad)}: write each as KEY=VALUE, e.g. "
                                         "prune_lm_head=true")
    return dict(item.split("=", 1) for item in items)


def _build(args) -> int:
    from ..making.build import build
    options = dict(PROFILES[args.profile].quantized if args.profile and args.precision in ("int4", "int8") else {})
    for name in ("block_size", "accuracy_level"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.extra_options:
        options["extra"] = {**options.get("extra", {}), **_key_values(args.extra_options)}
    result = build(args.model, args.precision, args.execution_provider, force=args.force, progress=not args.json,
                   check_memory=not args.no_memory_check, **options)
    summary = {"dir": str(result.path), "size_bytes": result.size_bytes, "seconds": round(result.seconds, 2),
               "cached": result.cached}
    print(json.dumps(summary) if args.json else f"{result.path} ({result.size_bytes / 1e9:.2f} GB, "
          f"{'cached' if result.cached else f'{result.seconds:.0f} s'})")
    return 0


def _export_vision(args) -> int:
    from ..core.paths import dir_size
    from ..making.vision_export import export
    quantized = PROFILES[args.profile].quantized if args.profile else None
    folder = export(args.model, args.precision, force=args.force, progress=not args.json, encoder=args.encoder,
                    quantized=quantized, check_memory=not args.no_memory_check)
    print(json.dumps({"dir": str(folder), "size_bytes": dir_size(folder)}) if args.json else folder)
    return 0


def _keep_tokenizer(args) -> int:
    from ..making.models import resolve_model
    from ..making.tokenizer import keep_source_tokenizer
    missing = [b for b in args.builds if not (Path(b) / "tokenizer_config.json").exists()]
    if missing:
        return _error(f"{', '.join(missing)}: no tokenizer_config.json; pass folders the model builder wrote "
                      "(its -o value).", 2)
    source = resolve_model(args.model)
    for folder in args.builds:
        keep_source_tokenizer(source, Path(folder))
        print(f"{folder}: tokenizer class and chat template of {source.name} restored")
    return 0


def _exercises(args) -> int:
    from .course import write_exercises
    written = write_exercises(args.out, keep=args.keep, lang=args.lang)
    kept = " (copies already there kept as they are)" if args.keep else ""
    print(f"{len(written)} attendee copies (solutions replaced by '# your code here') in {written[0].parent}{kept}")
    return 0


def _translations(args) -> int:
    from .translation_quality import quality_problems
    from .translations import LANGUAGES, check_language, problems, update_catalogues, write_translated
    langs = [check_language(lang) for lang in args.lang] if args.lang else list(LANGUAGES)
    if args.update:
        written = update_catalogues(langs)
        print(f"{len(written)} catalogues in line with the English labs (changed texts marked fuzzy, new ones "
              "untranslated): translate the empty and fuzzy entries, then run `labkit translations`.")
    if args.write:
        for lang in langs:
            written = write_translated(lang)
            print(f"{lang}: {len(written)} labs in {written[0].parent}")
    found = problems(langs)
    for problem in found:
        print(problem)
    missing = sum(p.state == "missing" for p in found)
    print(f"{len(found) - missing} stale, {missing} missing translations in {', '.join(langs)}"
          + (" (a stale cell shows its note; `labkit translations --update` marks it for the translator)"
             if found else ""))
    bad = [line for lang in langs for line in quality_problems(lang)] if args.check else []
    for line in bad:
        print(line)
    return 1 if missing or bad else 0


def _hub(args) -> int:
    from .server import prepare, serve
    settings = prepare(args.port, args.profile, state=args.state, exercises=args.exercises, seats=args.seats,
                       lang=args.lang)
    return serve(settings)


def _gpu_probe(args) -> int:
    from .gpu import NO_GPU_EXIT, probe
    found = probe()
    if not found.ok:
        return _error(found.summary(), NO_GPU_EXIT)
    print(f"GPU: {found.summary()}")
    return 0


# ------------------------------------------------------------------ the parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        parsed = sub.add_parser(name, help=help)
        parsed.set_defaults(handler=handler)
        return parsed

    course = command("course", _course, help="run the notebooks headless into runs/<timestamp>/")
    course.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 00 01")
    course.add_argument("--profile", default=os.environ.get("LABKIT_PROFILE", "cpu"), choices=PROFILES)
    course.add_argument("--demo", action="store_true", help="small parameters: about a minute on a warm cache")
    course.add_argument("--parameters", help="a JSON file of notebook parameters: {\"03_olive_awq_lora\": "
                                             "{\"finetune_steps\": 300}, …}")
    course.add_argument("--run-dir", help="the run folder (default: a new runs/<timestamp>/)")
    course.add_argument("--no-exercises", action="store_true",
                        help="stop each lab before its \"Your turn\" section (solutions and checks)")
    course.add_argument("--cold-cache", action="store_true",
                        help="run on an empty model cache (shadows linked in), removed afterwards: a first run's "
                             "minutes, memory and disk, as the run sheets record them")
    course.add_argument("--full-size-training", action="store_true",
                        help="laptop profile: lab 03 trains Phi-3.5-mini itself (its full_size_recipe), lab 04 uses it")
    course.add_argument("--lang", default=os.environ.get("COURSE_LANG") or None,
                        help="run the labs in es, pt, zh or ko (generated from the English ones and translations/)")
    course.add_argument("--sheet", help="also write the run's minutes and peak memory per lab to this JSON file "
                                        "(lab 00's plan reads docs/measured/laptop-course.json)")
    env = command("env", _env, help="check this machine for the course")
    env.add_argument("--profile", default=None, choices=PROFILES)
    command("tiny", _tiny, help="create the tiny Phi-3 (cached) and print where it is")
    bench = command("bench", _bench, help="benchmark ORT builds vs PyTorch on a ~160M-param model")
    bench.add_argument("--runs", type=_positive, default=3)
    scale = command("bench-scale", _bench_scale, help="build and run the full-size Phi-3.5-mini shadow on this CPU")
    scale.add_argument("--layers", type=int, default=None,
                       help="measure shadows of N/2 and N layers and extrapolate to 32 (quick)")
    scale.add_argument("--precisions", nargs="+", default=["int4", "int8", "fp32"])
    scale.add_argument("--runs", type=_positive, default=3)
    scale.add_argument("--vision", action="store_true",
                       help="also export the Phi-3.5-vision shadow and time image prompts (336x336, 1344x1008)")
    scale.add_argument("--phi4", action="store_true",
                       help="also Phi-4-mini's shadow (INT4), KV cache per token, decode after 256/2K/4K tokens")
    scale.add_argument("--out", default=None, help="JSON file (default runs/bench-scale.json)")
    recipes = command("bench-recipes", _bench_recipes,
                      help="lab 03's full-size recipe on the course model: answer quality, one change at a time")
    recipes.add_argument("--quick", action="store_true",
                         help="one row: lab 03 at a fifth of its steps, as the test suite trains it")
    recipes.add_argument("--every", type=_positive, default=1, help="ask a random 1/N of the 448 questions")
    recipes.add_argument("--out", default=None, help="also write the rows to this JSON file")
    training = command("bench-training", _bench_training,
                       help="lab 03's full-size AWQ and LoRA: minutes on this CPU, from 1- and 2-layer shadows")
    training.add_argument("--quick", action="store_true", help="the least work that runs every piece (a test)")
    training.add_argument("--out", default=None, help="JSON file (default runs/bench-training.json)")
    peer = command("bench-peers", _bench_peers,
                   help="ONNX Runtime GenAI vs llama.cpp and OpenVINO GenAI (make bench-peers)")
    peer.add_argument("--engines", nargs="+", default=["ortgenai", "llamacpp", "openvino"])
    peer.add_argument("--runs", type=_positive, default=3)
    peer.add_argument("--new-tokens", type=_positive, default=64)
    peer.add_argument("--threads", type=_positive, default=2)
    peer.add_argument("--out", default=None, help="JSON file (default runs/bench-peers.json)")
    pre = command("prefetch", _prefetch, help="download (or, offline, check) the models a profile needs")
    pre.add_argument("--profile", default=os.environ.get("LABKIT_PROFILE", "laptop"), choices=PROFILES)
    pre.add_argument("--model", default=None,
                     help="also what another model choice needs, e.g. microsoft/Phi-4-mini-instruct")
    one = command("build", _build, help="build a checkpoint with the model builder (labkit.build.build)")
    one.add_argument("model", help="`tiny`, a checkpoint folder or a hub id")
    one.add_argument("--precision", default="int4")
    one.add_argument("--execution-provider", default="cpu")
    one.add_argument("--force", action="store_true", help="rebuild even when a verified build is cached")
    one.add_argument("--profile", default=None, choices=PROFILES,
                     help="INT4/INT8 with that profile's options (laptop: blocks of 128, last-position logits)")
    one.add_argument("--block-size", type=int, default=None, help="INT4/INT8: weights per quantization block")
    one.add_argument("--accuracy-level", type=int, default=None, help="INT4/INT8: 4 = int8 compute")
    one.add_argument("--extra-options", nargs="+", default=None, metavar="KEY=VALUE",
                     help="the model builder's other --extra_options, e.g. prune_lm_head=true")
    one.add_argument("--json", action="store_true", help="print the result as one JSON line")
    one.add_argument("--no-memory-check", action="store_true",
                     help="start even where the measured peak RAM says it will not fit (make bench-scale decides once)")
    vis = command("export-vision", _export_vision,
                  help="export a Phi-3.5-vision checkpoint (labkit.vision_export.export)")
    vis.add_argument("model", help="`tiny-vision`, a checkpoint folder or a hub id")
    vis.add_argument("--precision", default="int4", help="the text decoder's")
    vis.add_argument("--encoder", default=None, choices=["int8", "fp32"],
                     help="the image encoder's weights (default: int8 on the CPU)")
    vis.add_argument("--profile", default=None, choices=PROFILES,
                     help="an INT4 decoder with that profile's options (laptop: blocks of 128)")
    vis.add_argument("--force", action="store_true")
    vis.add_argument("--no-memory-check", action="store_true",
                     help="start even where the measured peak RAM says it will not fit (make bench-scale decides once)")
    vis.add_argument("--json", action="store_true", help="print the result as one JSON line")
    keep = command("keep-tokenizer", _keep_tokenizer,
                   help="restore MODEL's tokenizer class and chat template in builder output folders, so "
                        "og.Tokenizer reads them")
    keep.add_argument("model", help="the checkpoint the builds came from: a folder, `tiny` or a hub id")
    keep.add_argument("builds", nargs="+", help="folders written by onnxruntime_genai.models.builder")
    exercises = command("exercises", _exercises, help="write attendee copies of the labs, solutions removed")
    exercises.add_argument("--out", default=None, help="folder (default: exercises/ in the course folder)")
    exercises.add_argument("--keep", action="store_true", help="leave copies that exist untouched (make lab)")
    exercises.add_argument("--lang", default=os.environ.get("COURSE_LANG") or None,
                           help="the labs in es, pt, zh or ko (into exercises/<lang>/)")
    trans = command("translations", _translations,
                    help="list stale and missing translations of the labs (exit 1 if one is missing)")
    trans.add_argument("--lang", nargs="+", default=None, help="es pt zh ko (default: all)")
    trans.add_argument("--write", action="store_true", help="also generate the labs into notebooks/<lang>/")
    trans.add_argument("--update", action="store_true",
                       help="first bring the catalogues in line with the English labs, for translators")
    trans.add_argument("--check", action="store_true",
                       help="also check each translation against its English (code, links, no English left)")
    hub = command("hub", _hub, help="serve the course to a room: JupyterHub, one Unix user and cgroup per attendee "
                                    "(root; make hub)")
    hub.add_argument("--port", type=_positive, default=8000)
    hub.add_argument("--profile", default=os.environ.get("LABKIT_PROFILE", "cpu"), choices=PROFILES)
    hub.add_argument("--seats", type=_positive, default=None,
                     help="attendees at most (default and ceiling: what this machine's RAM holds)")
    hub.add_argument("--state", type=Path, default=None,
                     help="the labs handed out, the hub's database and log (default /srv/phi-lab-hub)")
    hub.add_argument("--lang", default=os.environ.get("COURSE_LANG") or None,
                     help="hand out the labs in es, pt, zh or ko (default: English)")
    hub.add_argument("--exercises", type=Path, default=None,
                     help="the notebooks each attendee gets (default: the labs, solutions removed)")
    command("gpu-probe", _gpu_probe, help="nvidia-smi plus a real ONNX Runtime session on CUDA (exit 3 if none)")
    return parser


_DISK_ERRORS = {
    errno.ENOSPC: "the disk is full: free space there or point LABKIT_CACHE at a bigger disk",
    errno.EDQUOT: "your disk quota is used up: free space or point LABKIT_CACHE at another disk",
    errno.EACCES: "no permission: point LABKIT_CACHE (or the path given) at a folder you can write",
    errno.EROFS: "a read-only file system: point LABKIT_CACHE (or the path given) at a writable folder",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m labkit` / `labkit`. All labs."""
    os.environ.setdefault("OLIVE_DISABLE_TELEMETRY", "1")
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except LabkitError as err:
        if args.debug:
            raise
        return _error(str(err), USAGE)
    except OSError as err:     # a full disk, a read-only or missing folder: the path and the fix, not a traceback
        if args.debug or err.errno not in _DISK_ERRORS:
            raise
        return _error(f"{err.strerror}: {err.filename or ''} — {_DISK_ERRORS[err.errno]} "
                      "(--debug shows the traceback)", 1)
    except KeyboardInterrupt:
        print("interrupted: cached steps that did not finish are removed on their next run", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
