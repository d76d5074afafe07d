"""Run the course's notebooks headless with papermill: `make course` and the notebook tests.

Every notebook has one cell tagged `parameters`; papermill injects the values given here after
it. Each run writes into its own folder (`runs/<timestamp>/`): executed notebooks, every lab's
artifacts and `results.json`, so two runs never clobber each other.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..core import allocator, paths, results, sizing
from ..core.errors import LabkitError

# Headless runs (`make course`, tests) have no one to type into the chat panel.
COURSE_PARAMETERS = {"04_inference": {"interactive": False}}

# `make demo`: the whole course in about a minute on a warm cache (after `make course`): one timed run per
# measurement, one INT4 variant, short answers; lab 03 keeps its defaults so its cached outputs are reused.
DEMO_PARAMETERS = {
    "01_builder_quantization": {"runs": 1, "new_tokens": 16, "int4_variants": [{"algorithm": "rtn", "block_size": 32}]},
    "02_vision_export": {"max_new_tokens": 8, "verify_tokens": 6},
    "04_inference": {"bench_runs": 1, "max_new_tokens": 24},
}

SOLUTION_TAG = "solution"   # cells holding an exercise's solution; attendee copies get a stub instead
EXERCISES_HEADING = "## Your turn"   # every lab ends with its exercises under this heading
EXERCISES_TAG = "your-turn"          # the same heading cell in a translated lab


def notebooks(lang: str | None = None) -> list[Path]:
    """The numbered labs, in order: the English ones, or those of `lang` generated from them now. All labs."""
    if lang:
        from .translations import write_translated
        return write_translated(lang)
    return sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message shows the cell's source and the error. All labs."""


@dataclass
class Lab:
    """What a notebook gets from `labkit.start_lab`: its profile, its work folder, its results key. All labs."""

    name: str
    profile: object
    run_dir: Path
    started: float = field(default_factory=time.time)   # when the lab began: what is older came from the cache

    @property
    def dir(self) -> Path:
        """This lab's own artifact folder inside the run."""
        path = self.run_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, values: dict) -> None:
        """Add measured values to the run's results.json under this lab's name.

        Returns nothing: it ends many cells, and a returned path would print there as a raw `PosixPath`."""
        from ..making.models import shadows_requested

        ran = {"profile": self.profile.name, "shadows": self.profile.name != "cpu" and shadows_requested()}
        results.record(self.name, {**ran, **values}, self.run_dir / "results.json")


def start_lab(name: str, profile: str | None = None, run_dir: str | Path | None = None) -> Lab:
    """First call of every notebook: pick the profile and the run folder, print where things go. All labs."""
    from ..core.profiles import get_profile

    chosen = get_profile(profile)
    os.environ["LABKIT_PROFILE"] = chosen.name
    if run_dir:
        os.environ["LABKIT_RUN_DIR"] = str(Path(run_dir).expanduser().resolve())
    if os.environ.get("LABKIT_PLAIN_PROGRESS"):
        _plain_progress_bars()
    lab = Lab(name, chosen, paths.run_dir())
    print(f"{name}: profile {chosen.name} (execution provider {chosen.execution_provider}; text model "
          f"{chosen.text_model}, vision model {chosen.vision_model})")
    print(f"run folder: {paths.shown(lab.run_dir)}")
    from ..making.models import SHADOW_NOTICE, shadows_requested

    if chosen.name != "cpu" and shadows_requested():
        print(SHADOW_NOTICE)
    return lab


def _plain_progress_bars() -> None:
    """Text progress bars instead of widgets in headless runs: an executed notebook opened later then shows
    the finished bar, not a widget placeholder frozen at its first state ("0%")."""
    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm = tqdm.std.tqdm
    tqdm.auto.trange = tqdm.std.trange


@contextmanager
def _environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cell_timeout(profile: str = "cpu") -> int:
    """Seconds one cell may run before papermill stops it: the profile's, or `$LABKIT_CELL_TIMEOUT`. All labs."""
    from ..core.profiles import get_profile

    return int(os.environ.get("LABKIT_CELL_TIMEOUT") or get_profile(profile).cell_timeout_s)


def without_exercises(notebook: Path):
    """The notebook up to its "Your turn" section: the lab without its exercises' solutions and checks. All labs."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    start = next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
                  and (cell.source.startswith(EXERCISES_HEADING) or EXERCISES_TAG in cell.metadata.get("tags", []))),
                 len(nb.cells))
    if any(SOLUTION_TAG in cell.metadata.get("tags", []) for cell in nb.cells[:start]):
        raise ValueError(f"{notebook.name} has a solution cell before its {EXERCISES_HEADING!r} section: keep the "
                         "exercises in that last section.")
    nb.cells = nb.cells[:start]
    return nb


def _relative_to(path: Path, start: Path) -> str:
    """`path` as the notebook's kernel (started in `start`) reaches it: relative inside the project folder, so the
    injected parameters of an executed notebook show no machine's folders; absolute elsewhere."""
    if not Path(path).resolve().is_relative_to(paths.REPO):
        return str(path)
    return os.path.relpath(path, start)


def run_notebook(notebook: Path, run_dir: Path, parameters: dict | None = None, profile: str = "cpu",
                 timeout: int | None = None, exercises: bool = True, lang: str | None = None) -> Path:
    """Execute one notebook into `run_dir`; return the executed copy. Raises NotebookFailed. All labs.

    `timeout` bounds each cell (default: `cell_timeout(profile)`), so a hung cell fails the run. Without
    `exercises` the lab stops before its "Your turn" section.
    """
    import tempfile

    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    timeout = timeout or cell_timeout(profile)
    notebook, run_dir = Path(notebook).resolve(), Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    output = run_dir / notebook.name
    params = {"profile": profile, "run_dir": _relative_to(run_dir, notebook.parent), **(parameters or {})}
    source = notebook
    if not exercises:
        trimmed = tempfile.NamedTemporaryFile(suffix=notebook.name, delete=False)
        trimmed.close()
        source = Path(trimmed.name)
        nbformat.write(without_exercises(notebook), source)
    try:
        # The kernel inherits this environment. The inline backend keeps plots in the executed notebook
        # even where MPLBACKEND=Agg is set for headless machines.
        # The cpu profile's models are tiny: its kernels keep freed memory for reuse (labkit.allocator).
        small = allocator.thresholds(os.environ) if profile == "cpu" else {}
        # COURSE_LANG: labkit.checks speaks the notebook's language (labkit.translations.current_language).
        with _environment(**small, LABKIT_RUN_DIR=run_dir, LABKIT_PROFILE=profile, LABKIT_PLAIN_PROGRESS=1,
                          COURSE_LANG=lang or "",
                          HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), OLIVE_DISABLE_TELEMETRY=1,
                          MPLBACKEND="module://matplotlib_inline.backend_inline"):
            papermill.execute_notebook(str(source), str(output), parameters=params, kernel_name="python3",
                                       cwd=str(notebook.parent), progress_bar=False, execution_timeout=timeout,
                                       # ipykernel 7 warns at every start that its loopback TCP is unencrypted:
                                       # one line per notebook in `make course`. Cell errors still show.
                                       extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except CellTimeoutError as err:
        raise NotebookFailed(
            f"{notebook.name}: a cell ran longer than {timeout} s, the {profile} profile's limit per cell, and was "
            f"stopped.\n{str(err).split('Here is a preview', 1)[-1].strip()}\nIf it is only slow (a bigger model, "
            f"a slower machine), raise the limit with LABKIT_CELL_TIMEOUT=SECONDS. Executed copy: {output}") from None
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"{notebook.name} failed in cell {err.cell_index} (execution count {err.exec_count}):\n"
            f"---- cell source ----\n{err.source}\n---- error ----\n{err.ename}: {err.evalue}\n"
            f"Executed copy with the full traceback: {output}") from None
    finally:
        if source != notebook:
            source.unlink(missing_ok=True)
        if output.exists():
            tidy_outputs(output)
    return output


def tidy_outputs(executed: Path) -> None:
    """What Jupyter shows, saved as such: a cell's consecutive stdout (or stderr) writes become one output, and a
    line rewritten with carriage returns (a text progress bar) keeps only its last state; blank writes go. All labs.

    papermill saves every write as it arrives: a streamed answer is one output per token, and a progress bar
    one output per refresh, hundreds of them between a cell and its result."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                    and merged[-1].name == out.name:
                merged[-1].text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = "\n".join(_last_state(line) for line in out.text.split("\n"))
        if "outputs" in cell:   # a bar's closing newline can arrive after the next print: alone, it shows nothing
            cell.outputs = [out for out in merged if out.output_type != "stream" or out.text.strip()]
    tmp = executed.with_name(f".{executed.name}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, executed)


def _last_state(line: str) -> str:
    """A terminal line as it ends up: the text after its last carriage return (a trailing one changes nothing),
    without the blanks a progress bar pads a shorter refresh with."""
    states = [part for part in line.split("\r") if part]
    return states[-1].rstrip(" ") if states else ""


DOWNLOADS = ("shadows",)   # cache folders that stand for what `make prefetch` downloads: a first run finds them


@contextmanager
def cold_cache():
    """An empty model cache for one course run, with the `DOWNLOADS` folders of today's cache linked in: what the
    labs make, they make, as in an attendee's first run after `make prefetch`. Removed afterwards. All labs."""
    import shutil
    import tempfile

    warm = paths.cache_dir()
    cold = Path(tempfile.mkdtemp(prefix=".cold-", dir=warm))
    try:
        for name in DOWNLOADS:
            (warm / name).mkdir(exist_ok=True)
            try:
                (cold / name).symlink_to(warm / name, target_is_directory=True)
            except OSError as err:
                raise LabkitError(f"--cold-cache links the downloads into an empty cache, and this system refused a "
                                  f"link ({err.strerror or err}): on Windows turn on Developer Mode, or measure on "
                                  "Linux or macOS.") from None
        with _environment(LABKIT_CACHE=cold):
            yield cold
    finally:
        shutil.rmtree(cold, ignore_errors=True)


def run_course(selection: list[str] | None = None, parameters: dict[str, dict] | None = None,
               profile: str = "cpu", run_dir: Path | None = None, exercises: bool = True,
               cold: bool = False, lang: str | None = None) -> Path:
    """Run every notebook (or those whose names start with `selection`) into a new run folder. All labs.

    Without `exercises` each lab stops before its "Your turn" section (the suite's quick laptop run: the
    exercises run in the cpu course). `cold` runs on an empty cache (`cold_cache`): the minutes, memory and disk
    of a first run, which a run sheet records. `lang` runs the labs in es, pt, zh or ko (`labkit.translations`)."""
    everything = notebooks(lang)      # an unknown language is refused here, before any work
    chosen = [nb for nb in everything if not selection or any(nb.name.startswith(s) for s in selection)]
    if not chosen:
        raise SystemExit(f"No notebook matches {selection}; available: {[nb.name for nb in everything]}")
    run_dir = Path(run_dir) if run_dir else paths.new_run_dir()
    with cold_cache() if cold else nullcontext():
        timings = _run_timed(chosen, run_dir, parameters or {}, profile, exercises, cold, lang)
    report = _export_report(run_dir)
    print(json.dumps(timings, indent=2))
    print(f"\nDone. Executed notebooks, artifacts and results.json are in {run_dir}")
    if run_dir.parent == paths.runs_root() and (paths.runs_root() / "latest").is_dir():
        print(f"(also reachable as {paths.runs_root() / 'latest'})")
    if report:
        print(f"report: {report}")
    return run_dir


def _run_timed(chosen: list[Path], run_dir: Path, parameters: dict[str, dict], profile: str,
               exercises: bool = True, cold: bool = False, lang: str | None = None) -> dict:
    """Run the notebooks in order; record each one's seconds and peak memory in results.json as it finishes (and on
    a `cold` cache, the bytes it added to the cache)."""
    from tqdm.auto import tqdm

    from ..making.models import shadows_requested
    from ..measuring import memwatch

    shadows = profile != "cpu" and shadows_requested()
    # `--only` into an existing run folder adds to its record (same profile), so the report still sees every lab.
    before = results.read(run_dir / "results.json").get("course", {}) if (run_dir / "results.json").exists() else {}
    same = before.get("profile") == profile and before.get("shadows", False) == shadows
    timings = {k: v for k, v in before.get("notebook_seconds", {}).items() if k != "total"} if same else {}
    peaks = dict(before.get("peak_rss_bytes", {})) if same else {}
    grown = dict(before.get("cache_bytes", {})) if same and cold else {}
    started = time.perf_counter() - sum(timings.values())
    # What earlier runs left in the model cache: their builds and fine-tunes are reused, so the minutes are a rerun's.
    cache_at_start = before.get("cache_bytes_at_start", 0) if same and timings else (
        0 if cold else paths.dir_size(paths.cache_dir()))
    for nb in tqdm(chosen, desc="course", unit="notebook"):
        t = time.perf_counter()
        cached_before = paths.dir_size(paths.cache_dir()) if cold else 0
        # The kernel papermill starts is a child of this process: the watch sums it and everything it starts.
        with memwatch.PeakWatch() as watch:
            run_notebook(nb, run_dir, {**COURSE_PARAMETERS.get(nb.stem, {}), **parameters.get(nb.stem, {})},
                         profile, exercises=exercises, lang=lang)
        timings.pop("total", None)
        timings[nb.stem] = round(time.perf_counter() - t, 1)
        timings["total"] = round(time.perf_counter() - started, 1)
        peaks[nb.stem] = watch.peak_children_bytes
        if cold:   # what this lab added to the empty cache (the linked downloads are not walked)
            grown[nb.stem] = paths.dir_size(paths.cache_dir()) - cached_before
        # Recorded after every notebook, so the report notebook sees the labs before it.
        results.record("course", {"profile": profile, "shadows": shadows, "exercises": exercises,
                                  "language": lang or "en",
                                  "cold_cache": cold, **({"cache_bytes": grown} if cold else {}),
                                  "cache_bytes_at_start": cache_at_start,
                                  "notebook_seconds": timings,
                                  "peak_rss_bytes": peaks, "memory_limit_bytes": sizing.memory_limit_bytes()},
                       run_dir / "results.json")
    return timings


def _export_report(run_dir: Path) -> Path | None:
    """report.html from the executed report notebook, when the run included it."""
    if not (run_dir / "05_results.ipynb").exists():
        return None
    from ..measuring.report import export_html
    return export_html(run_dir / "05_results.ipynb", run_dir / "report.html")


def _attendee_copy(notebook: Path):
    """The notebook with every `solution` cell replaced by a stub, everything else kept (fastbook's clean). All labs.

    The stub keeps the solution's first line (it says what to set) and asks for the code.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            first = cell.source.splitlines()[0] if cell.source.startswith("#") else "# Your turn"
            cell.source = f"{first}\n# your code here\n"
            cell.metadata["tags"] = ["exercise"]
            cell.outputs, cell.execution_count = [], None
    return nb


def write_exercises(out: str | Path | None = None, keep: bool = False, lang: str | None = None) -> list[Path]:
    """Write attendee copies of every lab (solutions removed) into `exercises/` (or `out`); with `lang`, the labs
    in that language into `exercises/<lang>/`. All labs.

    `keep` leaves a copy that is already there untouched (`make lab`: an attendee's own work survives)."""
    import nbformat

    labs = notebooks(lang)            # an unknown language is refused here, before any folder is made
    out = Path(out) if out else paths.REPO / "exercises" / (lang or "")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in labs:
        path = out / notebook.name
        if keep and path.exists():
            written.append(path)
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        nbformat.write(_attendee_copy(notebook), tmp)
        tmp.replace(path)
        written.append(path)
    return written

