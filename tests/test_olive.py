import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from labkit import bench, cache, data, olive, paths


@pytest.fixture(scope="module")
def onnx_dir(travel_export):
    """Lab 03's export in the session's course: the AWQ model with its travel adapter as graph inputs."""
    return travel_export[0]


def test_bad_travel_file_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(olive, "_run_olive", lambda *a, **k: pytest.fail("Olive started on bad data"))
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "Best time for Rome?", "response": "Autumn."}\n{"prompt": "x"}\n')
    with pytest.raises(data.DataError, match=r"train.jsonl:2: missing field 'response'"):
        olive.finetune("tiny", train_file=bad)


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(olive.OliveStepError, match="BertModel"):
        olive.finetune(tmp_path)


def test_missing_adapter_is_a_clear_error(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter folder"):
        olive.export_with_adapter(tiny_dir, tmp_path / "nope")


def test_failed_step_names_step_and_log(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    # A negative sequence length makes Olive's data pass fail; Olive still exits 0 (upstream behaviour).
    # finetune() refuses it itself, so the test lets it through.
    monkeypatch.setattr(olive, "_blocks", lambda *_: (-5, 10))
    expected = "(?s)Olive step 'fine-tune' failed.*DatasetGenerationError.*Full log"
    with pytest.raises(olive.OliveStepError, match=expected):
        olive.finetune(tiny_dir, steps=2, max_seq_len=-5, progress=False)
    assert not list((tmp_path / "olive").glob("tiny-*")), "no half-written output folder"


def test_the_default_block_holds_the_longest_pair(tiny_dir):
    rows = data.validate_travel(paths.DATA / "travel" / "train.jsonl")
    lengths, _ = olive.pair_tokens(tiny_dir, rows)
    longest = max(lengths)
    assert 40 < longest < 128, "the travel pairs are short: Olive's default block of 1024 tokens would be slow on CPU"
    block = -(-longest // 16) * 16
    lab03 = (paths.NOTEBOOKS / "03_olive_awq_lora.ipynb").read_text()
    assert f"--max_seq_len {block} " in lab03 and f"which is {block} with Phi-3.5's tokenizer" in lab03, \
        f"lab 03's markdown says the tiny model's longest pair takes {block}"


def test_the_courses_fine_tune_learned_and_is_reused(course_run):
    """Lab 03's LoRA in the session's course: its loss fell, and the same call again is the cached adapter."""
    lab03 = course_run.lab("03_olive_awq_lora")
    tuned = lab03["finetune"]
    losses = [loss for _, loss in tuned["train_losses"]]
    assert len(losses) == tuned["steps"] // 5 and losses[-1] < losses[0] - 2
    assert tuned["eval_loss_after"] < tuned["eval_loss_before"] - 0.5
    # Olive's trainer counted its epochs over the blocks labkit predicted: join, not one padded row per pair.
    assert tuned["passes"] == pytest.approx(tuned["steps"] * 8 / tuned["blocks"], rel=0.01)
    again = olive.finetune(lab03["awq_dir"], steps=tuned["steps"], lora_r=tuned["lora_r"],
                           learning_rate=tuned["learning_rate"], progress=False)
    assert again.cached and again.losses == [tuple(x) for x in tuned["train_losses"]]
    assert (again.adapter / "adapter_config.json").exists()


def test_the_same_fine_tune_trains_the_same_adapter(tiny_dir, tmp_path, monkeypatch):
    """Olive's --seed seeds its search sampler only; labkit.olive_seeded seeds LoRA's initialisation too."""
    pairs = tmp_path / "pairs.jsonl"       # determinism, not the data: 64 pairs keep Olive's pre-processing short
    pairs.write_text("".join((paths.DATA / "travel" / "train.jsonl").read_text().splitlines(keepends=True)[:64]))
    trained = []
    for cache_dir in ("a", "b"):                               # two empty caches: trained twice, not reused
        monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / cache_dir))
        trained.append(olive.finetune(tiny_dir, steps=5, train_file=pairs, progress=False))
    assert not any(t.cached for t in trained) and trained[0].adapter != trained[1].adapter
    assert trained[0].losses == trained[1].losses and len(trained[0].losses) == 1
    weights = [cache.file_sha256(next(t.adapter.glob("*.safetensors"))) for t in trained]
    assert weights[0] == weights[1], "the same fine-tune trained a different adapter"


def test_exported_adapter_improves_eval_perplexity(tiny_dir, onnx_dir):
    from labkit import awq
    texts = awq.travel_chat_texts(tiny_dir)
    adapter = olive.adapter_file(onnx_dir)
    assert adapter.exists() and (onnx_dir / "genai_config.json").exists()
    assert bench.perplexity(onnx_dir, texts, adapter=adapter) < 0.5 * bench.perplexity(onnx_dir, texts)


ADAPTER_SCRIPT = """
import sys, numpy as np, onnxruntime_genai as og
model = og.Model(sys.argv[1])
adapters = og.Adapters(model)
adapters.load(sys.argv[2], "travel")
tokenizer = og.Tokenizer(model)
logits = []
for active in (True, False):
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=40)
    generator = og.Generator(model, params)
    if active:
        generator.set_active_adapter(adapters, "travel")
    generator.append_tokens(tokenizer.encode("<|user|>\\nWhat should I eat in Rome?<|end|>\\n<|assistant|>\\n"))
    logits.append(np.array(generator.get_output("logits"))[0, -1])
    while not generator.is_done():
        generator.generate_next_token()
    del generator
print(float(np.abs(logits[0] - logits[1]).max()))
del adapters, tokenizer, model
"""


def test_adapter_works_in_a_plain_genai_script(onnx_dir):
    done = subprocess.run([sys.executable, "-c", ADAPTER_SCRIPT, str(onnx_dir), str(olive.adapter_file(onnx_dir))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) > 0.1, "the active adapter changes the next-token logits"


def test_an_adapter_on_a_model_it_does_not_belong_to_names_its_model(onnx_dir, tiny_builds):
    from labkit import generate

    adapter = olive.adapter_file(onnx_dir)
    with pytest.raises(generate.GenerationError, match=r"(?s)does not belong to the model in .*lora.*"
                                                         rf"exported with the model in {onnx_dir}"):
        generate.generate(tiny_builds["int4"].path, "Hi", adapter=adapter, max_new_tokens=2)


def _tensors(adapter):
    from labkit.runtime.adapters import read_adapter
    read = read_adapter(adapter)
    return {name: value.numpy().copy() for name, value in read.get_parameters().items()}, read.get_model_version()


def test_lab04s_second_adapter_is_converted_without_an_export_as_olives_would_be(travel_export):
    """The conversion repeats the export's steps: lab 03's own LoRA converts to exactly the file Olive wrote."""
    from labkit import onnx_adapter

    onnx_dir, travel, brief = travel_export
    made = json.loads((brief.parent / "labkit_adapter.json").read_text())
    assert made["model_dir"] == str(onnx_dir.resolve()) and onnx_adapter.how_made(brief).startswith("converted")
    assert not list(brief.parent.glob("*.onnx")), "no second model was exported"
    source = Path(json.loads((onnx_dir / "labkit_export.json").read_text())["adapter"])
    wanted, version = _tensors(travel)
    again = onnx_adapter.convert(source, source, travel)
    assert again.keys() == wanted.keys() and all(again[k].tobytes() == wanted[k].tobytes() for k in wanted)
    converted, brief_version = _tensors(brief)
    assert converted.keys() == wanted.keys() and brief_version == version     # stamped for lab 03's model
    assert any(converted[k].tobytes() != wanted[k].tobytes() for k in wanted)


def test_a_conversion_that_does_not_reproduce_the_export_is_refused(travel_export, tmp_path):
    from safetensors.torch import load_file, save_file

    from labkit.training import onnx_adapter

    onnx_dir, travel, _ = travel_export
    source = Path(json.loads((onnx_dir / "labkit_export.json").read_text())["adapter"])
    wanted, version = _tensors(travel)
    scale = next(name for name in wanted if name.endswith("_scales"))
    onnx_adapter.write({**wanted, scale: wanted[scale] * 2}, tmp_path / "other.onnx_adapter", version)
    with pytest.raises(onnx_adapter.AdapterMismatch, match=f"{scale} differs from the export's"):
        onnx_adapter.convert(source, source, tmp_path / "other.onnx_adapter")
    # an adapter of another rank does not fit the graph's LoRA inputs
    narrow = tmp_path / "rank8"
    narrow.mkdir()
    config = json.loads((source / "adapter_config.json").read_text())
    (narrow / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    save_file({name: (value[:8] if ".lora_A." in name else value[:, :8]).contiguous()
               for name, value in load_file(str(source / "adapter_model.safetensors")).items()},
              str(narrow / "adapter_model.safetensors"))
    with pytest.raises(onnx_adapter.AdapterMismatch, match="another LoRA layout"):
        onnx_adapter.convert(narrow, source, travel)


def test_add_adapter_exports_again_when_the_conversion_is_refused(travel_export, monkeypatch, capsys):
    from labkit.training import onnx_adapter

    onnx_dir = travel_export[0]
    source = json.loads((onnx_dir / "labkit_export.json").read_text())
    monkeypatch.setattr(olive, "finetune", lambda *a, **k: olive.FineTune(Path(source["adapter"]), Path(".")))

    def refuse(*args):
        raise onnx_adapter.AdapterMismatch("x.weight_Q4 differs from the export's")

    exported = []
    monkeypatch.setattr(onnx_adapter, "convert", refuse)
    monkeypatch.setattr(olive, "export_with_adapter", lambda *a, **k: exported.append(a) or onnx_dir)
    assert olive.add_adapter(onnx_dir, paths.DATA / "travel" / "train_brief.jsonl") == \
        olive.adapter_file(onnx_dir)
    assert exported and "cannot be converted" in capsys.readouterr().out


def test_the_progress_bar_ends_full_when_steps_are_not_a_multiple_of_logging(tiny_dir, tmp_path, monkeypatch):
    """32 steps logged every 5: Olive reports 30; the bar must still end at 32/32 (it ended red at 94 %)."""
    import tqdm.auto

    bars = []

    class Recorded(tqdm.auto.tqdm):
        def close(self):
            bars.append((self.n, self.total))
            super().close()

    def fake_olive(step, args, log, expect, on_line=None, on_start=None):
        on_start()
        for i in range(6):
            on_line(f"{{'loss': '{3.0 - i / 10}', 'epoch': '{i / 6}'}}")
        (expect.parent).mkdir(parents=True)
        expect.write_text("{}")
        return 123 << 20           # the peak memory _run_olive reports

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    monkeypatch.setattr(olive, "_run_olive", fake_olive)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    settings = {"steps": 32, "seq": 128, "r": 4, "alpha": 4, "lr": 1e-3, "bs": 8, "blocks": 10}
    _, losses, passes, peak = olive._finetune_into(tmp_path / "out", tiny_dir, tmp_path / "train.jsonl", settings, 5,
                                                   tmp_path / "log", True)
    assert peak == 123 << 20
    assert [step for step, _ in losses] == [5, 10, 15, 20, 25, 30]
    assert bars and set(bars) == {(32, 32)}, bars
    assert passes == round(5 / 6 * 32 / 30, 3), "the whole run's passes, from the last logged epoch"


def test_the_fine_tune_reads_every_block_of_the_file(tiny_dir, tmp_path, monkeypatch):
    """Olive cuts the joined pairs into max_seq_len-token blocks, and its --max_samples (default 256) keeps the
    first ones: labkit passes the file's block count, and lab 03's command shows the same."""
    import re

    seen = {}

    def fake_olive(step, args, log, expect, on_line=None, on_start=None):
        on_start()
        seen.update(zip(args, args[1:]))
        expect.parent.mkdir(parents=True)
        expect.write_text("{}")

    monkeypatch.setattr(olive, "_run_olive", fake_olive)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    tuned = olive.finetune(tiny_dir, steps=2, progress=False)
    lengths, joiner = olive.pair_tokens(tiny_dir, data.travel("train"))
    blocks = (sum(lengths) + joiner * len(lengths)) // int(seen["--max_seq_len"])
    assert blocks > 256 and seen["--max_samples"] == str(blocks) and tuned.blocks == blocks
    notebook = (paths.REPO / "notebooks" / "03_olive_awq_lora.ipynb").read_text()
    assert re.search(rf"--max_samples {blocks}\b", notebook), "lab 03's olive command shows the same count"


def test_gradient_checkpointing_only_for_large_bfloat16_steps(tiny_dir, tmp_path, monkeypatch):
    """float32 (the tiny model) and the full-size recipe's 1-block bfloat16 steps skip the recomputation (and the
    backward pass through frozen layers it brings); 8 blocks in bfloat16 keep activations low."""
    from transformers import HfArgumentParser, TrainingArguments

    seen = []

    def fake_olive(step, args, log, expect, on_line=None, on_start=None):
        on_start()
        seen.append(args[args.index("--gradient_checkpointing") + 1])
        expect.parent.mkdir(parents=True)
        expect.write_text("{}")

    monkeypatch.setattr(olive, "_run_olive", fake_olive)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    for dtype, batch in (("float32", 8), ("bfloat16", 8), ("bfloat16", 1)):
        olive.finetune(tiny_dir, steps=2, batch_size=batch, torch_dtype=dtype, progress=False)
    assert seen == ["False", "True", "False"]
    # `olive finetune` hands options it does not know to the trainer's own parser, as Olive does
    parsed = HfArgumentParser(TrainingArguments).parse_args(["--output_dir", "x", "--gradient_checkpointing", "False"])
    assert parsed.gradient_checkpointing is False


def test_too_little_text_for_one_block_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(olive, "_run_olive", lambda *a, **k: pytest.fail("Olive started"))
    pairs = tmp_path / "train.jsonl"
    pairs.write_text(json.dumps({"prompt": "Best time for Rome?", "response": "Autumn."}) + "\n")
    with pytest.raises(olive.InputError, match="not enough for one block of max_seq_len=16"):
        olive.finetune("tiny", train_file=pairs, max_seq_len=16, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": -1}, "learning_rate=-1 must be a number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate=nan"),
    ({"batch_size": 0}, "batch_size=0 must be a whole number >= 1"),
    ({"steps": 2.5}, "steps=2.5 must be a whole number"),
    ({"lora_r": 0}, "lora_r=0"),
    ({"max_seq_len": 10**6}, "between 16 and the model's context"),
    ({"max_seq_len": 8}, "max_seq_len=8 must be between 16"),
])
def test_settings_olive_would_fail_on_are_refused_before_it_starts(kwargs, message, monkeypatch):
    monkeypatch.setattr(olive, "_run_olive", lambda *a, **k: pytest.fail("Olive started on bad settings"))
    with pytest.raises(olive.InputError, match=message):
        olive.finetune("tiny", progress=False, **kwargs)


def test_a_pair_longer_than_the_context_is_refused_with_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(olive, "_run_olive", lambda *a, **k: pytest.fail("Olive started"))
    pairs = tmp_path / "train.jsonl"
    short = json.dumps({"prompt": "Best time for Rome?", "response": "Autumn."})
    pairs.write_text(f"{short}\n\n{json.dumps({'prompt': 'q', 'response': 'word ' * 9000})}\n")
    with pytest.raises(olive.InputError, match=r"train.jsonl:3: this pair is 9,0\d\d tokens, longer than the "
                                               r"model's context \(8,192\)"):
        olive.finetune("tiny", train_file=pairs, progress=False)


def test_an_interrupted_step_stops_its_child_and_a_killed_ones_folder_goes(tmp_path):
    import os
    import time
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    started = []

    def interrupt(line):
        started.append(int(line))
        raise KeyboardInterrupt                          # Jupyter's stop button, mid-fine-tune

    with pytest.raises(KeyboardInterrupt):
        olive._stream([sys.executable, "-c", code], tmp_path, tmp_path / "log", interrupt)
    assert not psutil.pid_exists(started[0]), "the interrupted step's child was stopped and reaped"
    dead, mine = tmp_path / "run-999999999-abcd", tmp_path / f"run-{os.getpid()}-abcd"
    dead.mkdir(), mine.mkdir()
    olive._remove_dead_workdirs(tmp_path)
    assert not dead.exists() and mine.exists()
    # a killed parent (kernel died): the child notices within a second or two and exits
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, subprocess, sys, time
        env = dict(os.environ, LABKIT_PARENT_PID=str(os.getpid()))
        child = subprocess.Popen([sys.executable, "-c", "from labkit.training import olive_seeded as s; "
                                  "s.exit_with_parent(); print('watching', flush=True); import time; time.sleep(60)"],
                                 env=env, stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        print(child.pid, flush=True)
        time.sleep(60)""")], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.pid_exists(child_pid) and not _zombie(child_pid):
        time.sleep(0.2)
    assert not psutil.pid_exists(child_pid) or _zombie(child_pid), "the fine-tune's child outlived its parent"


def _zombie(pid: int) -> bool:
    try:
        return " Z " in open(f"/proc/{pid}/stat").read().split(")", 1)[1][:4]
    except OSError:
        return False


def test_the_printed_command_shows_the_cache_and_no_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    line = olive._shown(["finetune", "-m", str(tmp_path / "awq" / "m"), "-o",
                         str(tmp_path / "olive" / ".tmp-m-lora-r16-k9x_2abc" / "olive"),
                         "--data_files", str(paths.DATA / "travel" / "train.jsonl"), "--text_template", "a\nb"])
    assert line == ("$ olive finetune -m $LABKIT_CACHE/awq/m -o OUT/olive --data_files data/travel/train.jsonl "
                    "--text_template 'a\\nb'")


def test_eval_loss_is_the_mean_per_token_loss_and_measured_once(tiny_dir, tmp_path, monkeypatch):
    """Batched, right-padded: the same mean as one text at a time; read back for the same model and texts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    rows = data.travel("eval")[:5]
    loss = bench.eval_loss(tiny_dir, rows=rows)
    tokenizer, net = AutoTokenizer.from_pretrained(tiny_dir), AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    total = count = 0
    with torch.no_grad():
        for text in data.chat_texts(tokenizer, rows):
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            total += torch.nn.functional.cross_entropy(net(ids).logits[0, :-1], ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    assert loss == pytest.approx(total / count, rel=1e-4)
    monkeypatch.setattr(bench, "_eval_loss", lambda *_: pytest.fail("measured the same model and texts again"))
    assert bench.eval_loss(tiny_dir, rows=rows) == loss
    with pytest.raises(pytest.fail.Exception):
        bench.eval_loss(tiny_dir, rows=rows[:4])



HEARTBEAT_LOGGED = """
from olive.telemetry import telemetry
from labkit.training.olive_seeded import honour_telemetry_opt_out
logged = []
telemetry.Telemetry.log = lambda self, name, *args, **kwargs: logged.append(name)
telemetry.Telemetry()
telemetry.Telemetry._instance = None
honour_telemetry_opt_out()
telemetry.Telemetry()
print(",".join(logged) or "nothing")
"""


def test_olive_commands_honour_the_telemetry_opt_out_outside_ci():
    """Olive 0.13 logs its heartbeat before it reads OLIVE_DISABLE_TELEMETRY=1 (then waits up to 11 s at exit to
    send it); with labkit's patch the second start logs nothing. Two heartbeats: the patch no longer works. None:
    Olive fixed it, and the workaround can go."""
    from olive.telemetry.telemetry import _CI_ENV_VARS

    env = {k: v for k, v in os.environ.items() if k not in _CI_ENV_VARS} | {"OLIVE_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-c", HEARTBEAT_LOGGED], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OliveHeartbeat"]


def test_the_steps_error_is_not_hidden_by_shutdown_noise(tmp_path):
    """Python 3.12 prints an "Exception ignored in atexit callback" after Olive's own error (OpenTelemetry's log
    handler starting a thread at shutdown): the error shown is still the step's."""
    log = tmp_path / "step.log"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "datasets.exceptions.DatasetGenerationError: An error occurred while generating the dataset\n"
                   "No output model produced. Please check the log for details.\n"
                   "Exception ignored in atexit callback: <function shutdown at 0x7f>\n"
                   "Traceback (most recent call last):\n  File \"threading.py\", line 992, in start\n"
                   "    _start_new_thread(self._bootstrap, ())\n"
                   "RuntimeError: can't create new thread at interpreter shutdown\n", encoding="utf-8")
    assert olive._last_error(log).startswith("datasets.exceptions.DatasetGenerationError")
