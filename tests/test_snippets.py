"""Every command and snippet a notebook shows in markdown works as shown, with the course's models.

Each fenced `bash` / `python` block runs in the course environment, with the hub id replaced by the
course model's folder and `path/to/...` placeholders by the folders the labs build. Blocks of one
notebook run in order in one folder, so a command can use what the one before it wrote. A block
that says it needs an NVIDIA GPU or the network is skipped with that reason.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import build, course, data, paths, vision_checkpoint, vision_export

BIN = Path(sys.executable).parent
NEEDS = re.compile(r"#\s*needs (an NVIDIA GPU|the network)[^\n]*")


def snippets():
    """(notebook stem, index, language, code) of every fenced bash/python block in the notebooks' markdown."""
    found = []
    for notebook in course.notebooks():
        cells = json.loads(notebook.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for i, (lang, code) in enumerate(re.findall(r"```(bash|python)\n(.*?)```", text, re.S)):
            found.append((notebook.stem, i, lang, code))
    return found


def test_every_notebook_with_a_command_is_covered():
    stems = {stem for stem, *_ in snippets()}
    assert {"00_environment_check", "01_builder_quantization", "02_vision_export", "03_olive_awq_lora",
            "04_inference"} <= stems


@pytest.fixture(scope="module")
def places(tiny_dir, tmp_path_factory):
    """What the snippets' placeholders stand for, built by the labs' own code (cached)."""
    work = tmp_path_factory.mktemp("snippets")
    export = vision_export.export("tiny-vision", "int4", progress=False)
    config, _ = vision_checkpoint.checked_config(vision_checkpoint.resolve("tiny-vision"))
    text_only = vision_checkpoint.text_checkpoint(config, vision_checkpoint.resolve("tiny-vision"), work / "text-only")
    return {
        "microsoft/Phi-3.5-mini-instruct": str(tiny_dir),
        "path/to/int4-build": str(build.build(tiny_dir, "int4", progress=False).path),
        "path/to/export": str(export),
        "TEXT_ONLY_CHECKPOINT": str(text_only),
        "data/travel/train.jsonl": str(paths.DATA / "travel" / "train.jsonl"),
        "data/travel/answer.schema.json": str(paths.DATA / "travel" / "answer.schema.json"),
        "python app.py": f"python {paths.REPO / 'app.py'}",      # run from the course folder, as shown
    }


# The one change to a command besides its placeholders: lab 03's LoRA runs as shown, but for 10 steps, not the lab's
# several hundred (minutes on 2 cores; test_olive and the session's course run train full adapters).
SHORTER = (re.compile(r"--max_steps \d+"), "--max_steps 10")


def run_block(lang: str, code: str, places: dict, cwd: Path) -> subprocess.CompletedProcess:
    for placeholder, real in places.items():
        code = code.replace(placeholder, real)
    code = SHORTER[0].sub(SHORTER[1], code)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


COURSE_PLACE = "path/to/onnx"   # lab 03's export in the session's course: those notebooks' snippets wait for it


def snippet_notebooks():
    stems = sorted({stem for stem, *_ in snippets()})
    reads_course = {stem for stem, _, _, code in snippets() if COURSE_PLACE in code}
    return [pytest.param(stem, marks=pytest.mark.course) if stem in reads_course else stem for stem in stems]


@pytest.mark.parametrize("stem", snippet_notebooks())
def test_markdown_snippets_run(stem, places, tmp_path, request):
    if request.node.get_closest_marker("course"):   # set by snippet_notebooks() for the notebooks that need it
        places = {**places, COURSE_PLACE: str(request.getfixturevalue("travel_export")[0]),
                  "path/to/json.onnx_adapter": request.getfixturevalue("course_run").lab("04_inference")["structured"]
                  ["json_adapter"]}
    shutil.copy(data.images()[0], tmp_path / "beach.png")
    (tmp_path / "awq").symlink_to(places["microsoft/Phi-3.5-mini-instruct"])   # lab 03's first command's output
    ran = 0
    for _, index, lang, code in (s for s in snippets() if s[0] == stem):
        if NEEDS.search(code):
            continue   # reported by test_blocks_that_cannot_run_here_say_why
        done = run_block(lang, code, places, tmp_path)
        assert done.returncode == 0, f"{stem} block {index} ({lang}) failed:\n{code}\n{done.stdout[-2000:]}" \
                                     f"\n{done.stderr[-3000:]}"
        ran += 1
    assert ran, f"{stem} has snippets but none ran here"
    if stem == "01_builder_quantization":   # the builder CLI's folders load in og as they are
        import onnxruntime_genai as og
        for name in ("phi35-int4", "phi35-fp32"):
            model = og.Model(str(tmp_path / name))
            assert og.Tokenizer(model).encode("Hello").size > 0
            del model


def test_blocks_that_cannot_run_here_say_why():
    skipped = [(stem, NEEDS.search(code).group(0)) for stem, _, _, code in snippets() if NEEDS.search(code)]
    assert skipped == [("03_olive_awq_lora", "# needs an NVIDIA GPU: Olive's AWQ runs autoawq (CUDA-only, archived)")]


def test_the_builder_cli_alone_leaves_a_tokenizer_og_rejects(tiny_dir, tmp_path):
    """Why lab 01 shows `labkit keep-tokenizer` after the builder: without it og refuses the folder."""
    import onnxruntime_genai as og

    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(tiny_dir), "-o", "out",
                    "-p", "int4", "-e", "cpu", "-c", "cache"], cwd=tmp_path, check=True, capture_output=True)
    model = og.Model(str(tmp_path / "out"))
    with pytest.raises(Exception, match="TokenizersBackend|Unsupported tokenizer"):
        og.Tokenizer(model)
    subprocess.run([sys.executable, "-m", "labkit", "keep-tokenizer", str(tiny_dir), "out"], cwd=tmp_path,
                   check=True, capture_output=True)
    assert og.Tokenizer(og.Model(str(tmp_path / "out"))).encode("Hello").size > 0
