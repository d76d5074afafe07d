"""The model cache: verified hits, damaged outputs rebuilt, and processes sharing one cache."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from labkit import build, cache, generate, models, paths


def finished(folder, files):
    """A folder written through cache.atomic_dir, with the given {name: bytes}."""
    with cache.atomic_dir(folder) as tmp:
        for name, content in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
    return folder


# ------------------------------------------------------------------ manifests
def test_manifest_is_written_last_and_verifies(tmp_path):
    out = finished(tmp_path / "out", {"a.bin": b"x" * 100, "sub/b.json": b"{}"})
    manifest = json.loads((out / cache.MANIFEST).read_text())
    assert set(manifest["files"]) == {"a.bin", "sub/b.json"}
    assert manifest["files"]["a.bin"]["size"] == 100 and "sha256" in manifest["files"]["a.bin"]
    assert cache.verify(out) is None


@pytest.mark.parametrize("damage, problem", [
    (lambda out: (out / "a.bin").write_bytes(b"x" * 10), "a.bin has 10 bytes, the manifest says 100"),
    (lambda out: (out / "sub" / "b.json").unlink(), "sub/b.json is missing"),
    (lambda out: (out / "a.bin").write_bytes(b"y" * 100), "a.bin does not match its SHA-256"),
    (lambda out: (out / cache.MANIFEST).unlink(), "no manifest.json"),
    (lambda out: (out / cache.MANIFEST).write_text("{"), "unreadable manifest.json"),
])
def test_damaged_outputs_are_named(tmp_path, damage, problem):
    out = finished(tmp_path / "out", {"a.bin": b"x" * 100, "sub/b.json": b"{}"})
    damage(out)
    assert problem in cache.verify(out)


def test_big_files_are_checked_by_sampled_blocks_and_their_time(tmp_path, monkeypatch):
    """The trade-off of the module doc: big files are sampled on a hit, and fully re-hashed only when touched."""
    monkeypatch.setattr(cache, "HASH_LIMIT", 1000)
    monkeypatch.setattr(cache, "_SAMPLE_BYTES", 100)           # 64 blocks of 100 bytes in 64,000
    out = finished(tmp_path / "out", {"weights.bin": bytes(range(250)) * 256})
    entry = json.loads((out / cache.MANIFEST).read_text())["files"]["weights.bin"]
    assert {"size", "sha256", "sample", "mtime_ns"} <= set(entry)
    weights = out / "weights.bin"

    def overwrite(offset, data, keep_time):
        with weights.open("r+b") as f:
            f.seek(offset)
            f.write(data)
        if keep_time:       # what a copy that keeps times would show
            os.utime(weights, ns=(entry["mtime_ns"], entry["mtime_ns"]))

    overwrite(30_000, bytes(2_000), keep_time=True)             # a zeroed region, same size and time
    assert "sampled blocks differ" in cache.verify(out)
    overwrite(30_000, (bytes(range(250)) * 256)[30_000:32_000], keep_time=True)
    assert cache.verify(out) is None
    overwrite(150, b"\xff", keep_time=True)                     # one byte between samples, time kept: the
    assert cache.verify(out) is None                            # documented blind spot of the sampled check
    overwrite(150, b"\xff", keep_time=False)                    # any write that changes the time: full hash
    assert "does not match its SHA-256" in cache.verify(out)


def test_an_older_manifest_without_hashes_of_big_files_is_rebuilt(tmp_path):
    out = finished(tmp_path / "out", {"weights.bin": b"x" * 100})
    manifest = json.loads((out / cache.MANIFEST).read_text())
    (out / cache.MANIFEST).write_text(json.dumps({"format": "labkit-manifest-v1", "files": {"weights.bin": {
        "size": 100}}}))
    assert "older manifest.json" in cache.verify(out)
    manifest["format"] = "labkit-manifest-v1"                   # v1 that hashed every file: still trusted
    (out / cache.MANIFEST).write_text(json.dumps(manifest))
    assert cache.verify(out) is None


def test_leftovers_of_a_killed_step_are_removed_on_its_next_run(tmp_path):
    final = tmp_path / "kind" / "tiny-int4-0123456789ab"
    for leftover in (".tmp-tiny-int4-0123456789ab-k9x_2abc", ".old-tiny-int4-0123456789ab-4242"):
        (final.parent / leftover / "sub").mkdir(parents=True)
    other = final.parent / ".tmp-tiny-int4-0123456789ab-more-k9x_2abc"   # another output's temp folder
    other.mkdir()
    with cache.cached_dir(final) as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in final.parent.iterdir()) == sorted(
        [final.name, other.name, f".{final.name}.lock"])


def test_a_read_only_shared_cache_serves_its_finished_outputs(tmp_path, monkeypatch):
    """As on a workshop server where attendees may read the instructor's cache but not write it."""
    final = finished(tmp_path / "out", {"a.bin": b"x"})

    def read_only(_final):
        raise PermissionError(13, "Permission denied", str(_final.parent / f".{_final.name}.lock"))

    monkeypatch.setattr(cache, "lock_for", read_only)
    with cache.cached_dir(final) as tmp:
        assert tmp is None
    with pytest.raises(cache.CacheError, match="read-only for you .* holds no finished other"), \
            cache.cached_dir(tmp_path / "other"):
        pass


def test_a_full_disk_is_one_error_naming_the_fix_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))

    def make(tmp, log):
        (tmp / "half.bin").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(cache.CacheError, match="The disk filled up while making the demo step .* LABKIT_CACHE"):
        cache.cached_step("kind", "demo", ("k",), make, info_file="info.json", label="demo step")
    assert [p.name for p in (tmp_path / "kind").iterdir() if not p.name.startswith(".")] == ["logs"]


def test_labkit_cache_pointing_at_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "file"))
    with pytest.raises(cache.CacheError, match="is a file, not a folder"):
        paths.cache_dir()


def test_cached_dir_reuses_a_verified_output_and_rebuilds_a_damaged_one(tmp_path, capsys):
    final, runs = tmp_path / "out", []

    def make():
        with cache.cached_dir(final, label="demo") as tmp:
            if tmp is None:
                return "hit"
            runs.append(1)
            (tmp / "data.bin").write_bytes(b"z" * 1000)
        return "built"

    assert [make(), make()] == ["built", "hit"]
    (final / "data.bin").write_bytes(b"z" * 10)          # truncated, e.g. by a full disk
    assert make() == "built" and len(runs) == 2
    assert "demo: the cached copy" in capsys.readouterr().out
    assert cache.verify(final) is None


def test_a_failed_step_leaves_no_folder_and_the_previous_output(tmp_path):
    final = finished(tmp_path / "out", {"a": b"old"})
    with pytest.raises(RuntimeError), cache.cached_dir(final, force=True) as tmp:
        (tmp / "a").write_bytes(b"half")
        raise RuntimeError("killed")
    assert (final / "a").read_bytes() == b"old" and cache.verify(final) is None
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["out"]


# ------------------------------------------------------------------ a damaged real build
def isolated_cache(tmp_path, monkeypatch, tiny_dir):
    """An empty LABKIT_CACHE holding only a copy of the (already trained) tiny model."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    shutil.copytree(tiny_dir, tmp_path / tiny_dir.name)
    assert models.create_tiny("tiny") == tmp_path / tiny_dir.name, "the copy is a verified cache hit"


def test_a_same_size_damaged_weight_file_is_caught_on_reuse(tiny_dir, tmp_path, monkeypatch, capsys):
    """A zeroed megabyte inside model.onnx.data, its size and time kept: the sampled check catches it."""
    isolated_cache(tmp_path, monkeypatch, tiny_dir)
    first = build.build("tiny", "int4", progress=False)
    data_file = first.path / "model.onnx.data"
    stat = data_file.stat()
    assert stat.st_size > cache.HASH_LIMIT, "the check under test is the one for big files"
    with data_file.open("r+b") as f:
        f.seek(stat.st_size // 2)
        f.write(bytes(1 << 20))
    os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = build.build("tiny", "int4", progress=False)
    assert not again.cached and again.path == first.path
    out = capsys.readouterr().out
    assert out.count("rebuilding it") == 1 and "model.onnx.data does not match" in out
    assert generate.generate(again.path, "Tell me a fact.", max_new_tokens=4).new_tokens > 0


def test_a_deleted_weights_file_is_rebuilt(tiny_dir, tmp_path, monkeypatch, capsys):
    isolated_cache(tmp_path, monkeypatch, tiny_dir)
    first = build.build("tiny", "fp32", progress=False)
    (first.path / "model.onnx.data").unlink()
    assert not build.build("tiny", "fp32", progress=False).cached
    assert "model.onnx.data is missing" in capsys.readouterr().out


def test_a_damaged_tiny_model_is_recreated(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    spec = dataclasses.replace(models.SPECS["tiny"], name="tiny-check", train_steps=0)
    path = models.create_tiny(spec, progress=False)
    (path / "config.json").write_text("{ half")
    assert models.create_tiny(spec, progress=False) == path
    assert "config.json has 6 bytes" in capsys.readouterr().out
    assert json.loads((path / "config.json").read_text())["model_type"] == "phi3"


# ------------------------------------------------------------------ bad inputs with their fix
def test_corrupt_config_json_names_the_file_and_the_fix(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "config.json").write_text('{"architectures": ["Phi3ForCausalLM"],')
    with pytest.raises(ValueError, match=r"(?s)broken/config.json is not valid JSON \(line 1.*hf download"):
        models.resolve_model(broken)
    with pytest.raises(build.BuildError, match="config.json is not valid JSON"):
        build.check_model_dir(broken)
    with pytest.raises(ValueError, match="not valid JSON"):
        paths.read_json(broken / "config.json")


# ------------------------------------------------------------------ processes sharing one cache
WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from labkit import cache
    final, log = Path(sys.argv[1]), Path(sys.argv[2])
    with cache.cached_dir(final) as tmp:
        if tmp is None:
            result = "hit"
        else:
            with log.open("a") as f:
                f.write("built\\n")
            (tmp / "part1").write_bytes(b"a" * 1000)
            time.sleep(0.5)                      # a slow step: the others must wait, not start their own
            (tmp / "part2").write_bytes(b"b" * 1000)
            result = "built"
    assert cache.verify(final) is None, cache.verify(final)
    print(result)
""")


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_processes_build_one_output_once(tmp_path, attempt):
    final, log = tmp_path / "shared" / "out", tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(final), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["built", "hit", "hit", "hit"]
    assert log.read_text() == "built\n"
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json", "part1", "part2"]


def test_concurrent_builds_of_one_key_build_once(tiny_dir, tmp_path, monkeypatch):
    isolated_cache(tmp_path, monkeypatch, tiny_dir)
    script = "from labkit import build; b = build.build('tiny', 'int4', progress=False); print(b.cached, b.path)"
    env = dict(os.environ, LABKIT_CACHE=str(tmp_path))

    def run(_):
        return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(run, range(3)))
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr[-2000:] for r in runs]
    results = [r.stdout.split() for r in runs]
    assert sorted(cached for cached, _ in results) == ["False", "True", "True"], "built once, reused twice"
    assert len({path for _, path in results}) == 1
    assert generate.generate(results[0][1], "Hello", max_new_tokens=4).new_tokens > 0


def test_two_courses_on_one_empty_cache_both_pass(tmp_path):
    """Two attendees start lab 01 at the same moment on one empty shared cache: both need the tiny model and its
    builds, so each is made once while the other waits (lab 00 makes nothing that lab 01 does not)."""
    env = dict(os.environ, LABKIT_CACHE=str(tmp_path / "cache"), LABKIT_RUNS=str(tmp_path / "runs"))
    env.pop("LABKIT_RUN_DIR", None)
    # One INT4 build and the exercise's block-16 build in lab 01: fewer builds, the same race for each of them.
    small = tmp_path / "parameters.json"
    small.write_text(json.dumps({"01_builder_quantization": {"precisions": ["int4"], "int4_variants": [], "runs": 1,
                                                             "new_tokens": 8, "directml": False}}))
    command = [sys.executable, "-m", "labkit", "course", "--only", "01", "--parameters", str(small)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(out[-3000:] for out in outs)
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 2, "each course got its own run folder"
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        assert results["01_builder_quantization"]["builds"]
    cache_root = tmp_path / "cache"
    finished = [p for p in cache_root.rglob("manifest.json")]
    assert finished and all(cache.verify(p.parent) is None for p in finished)
    tiny = [p for p in cache_root.iterdir() if p.name.startswith("tiny-") and p.is_dir()]
    assert len(tiny) == 1, f"one tiny model, made once: {tiny}"
    assert not [p for p in cache_root.rglob(".tmp-*")], "no temp folders left behind"
    trained = [run.name for run in runs if "pre-training tiny" in (run / "01_builder_quantization.ipynb").read_text()]
    assert not trained, f"the committed tiny model is copied into the cache, never pre-trained here: {trained}"


def test_cached_step_keys_logs_records_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    made = []

    def make(tmp, log):
        made.append(tmp)
        log.write_text("the library's output\n")
        (tmp / "weights.bin").write_bytes(b"w" * 10)
        return {"answer": 42}

    first = cache.cached_step("builds", "tiny-int4", ("tiny", {"bits": 4}), make, info_file="build_info.json",
                              label="a step")
    assert first.path == tmp_path / "builds" / f"tiny-int4-{cache.cache_key('tiny', {'bits': 4})}"
    assert first.log == tmp_path / "builds" / "logs" / f"{first.path.name}.log" and first.log.read_text()
    assert not first.cached and first.info["answer"] == 42 and "seconds" in first.info
    assert json.loads((first.path / "build_info.json").read_text()) == first.info
    assert cache.verify(first.path) is None and len(made) == 1 and not made[0].exists()
    again = cache.cached_step("builds", "tiny-int4", ("tiny", {"bits": 4}), make, info_file="build_info.json",
                              label="a step")
    assert again.cached and again.path == first.path and again.info == first.info and len(made) == 1
    other = cache.cached_step("builds", "tiny-int4", ("tiny", {"bits": 8}), make, info_file="build_info.json",
                              label="a step")
    assert other.path != first.path and len(made) == 2, "another input, another output"


def test_a_folders_key_is_its_content_not_its_manifest(tmp_path):
    folder = finished(tmp_path / "model", {"config.json": b"{}", "weights.bin": b"w" * 100})
    before = cache.model_fingerprint(folder)
    (folder / cache.MANIFEST).write_text("{}")                   # re-written by a later copy: other times
    assert cache.model_fingerprint(folder) == before
    (folder / "weights.bin").write_bytes(b"v" * 100)
    assert cache.model_fingerprint(folder) != before


# ------------------------------------------------------------------ a workshop's shared, read-only cache
def test_shared_cache_is_read_in_place_and_misses_are_made_in_the_own_cache(tmp_path, monkeypatch):
    shared, own = tmp_path / "shared", tmp_path / "own"
    made = []

    def make(tmp, log):
        made.append(tmp)
        (tmp / "weights.bin").write_bytes(b"w" * 64)
        return {"made_by": str(paths.cache_dir())}

    monkeypatch.setenv("LABKIT_CACHE", str(shared))           # the instructor fills the shared cache
    filled = cache.cached_step("builds", "tiny-int4", ("tiny", 4), make, info_file="info.json", label="int4 build")
    shared.chmod(0o555)                                        # read-only, as for an attendee
    for folder in shared.rglob("*"):
        if folder.is_dir():
            folder.chmod(0o555)
    try:
        monkeypatch.setenv("LABKIT_CACHE", str(own))
        monkeypatch.setenv("LABKIT_SHARED_CACHE", str(shared))
        hit = cache.cached_step("builds", "tiny-int4", ("tiny", 4), make, info_file="info.json", label="int4 build")
        assert hit.cached and hit.path == filled.path and len(made) == 1
        assert cache.output_dir("builds", filled.path.name) == filled.path
        # another setting is the attendee's own output, in the own cache
        mine = cache.cached_step("builds", "tiny-int4", ("tiny", 8), make, info_file="info.json", label="int4 build")
        assert not mine.cached and mine.path.is_relative_to(own) and len(made) == 2
        # force makes an own copy; the shared one is never written
        forced = cache.cached_step("builds", "tiny-int4", ("tiny", 4), make, info_file="info.json",
                                   label="int4 build", force=True)
        assert forced.path.is_relative_to(own) and cache.verify(filled.path) is None
        with pytest.raises(cache.CacheError, match="never writes"), cache.cached_dir(filled.path, force=True):
            pass
    finally:
        for folder in [shared, *shared.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)


def test_a_damaged_shared_copy_is_not_used(tmp_path, monkeypatch):
    shared = finished(tmp_path / "shared" / "builds" / "x-1", {"w.bin": b"a" * 32})
    (shared / "w.bin").write_bytes(b"b" * 32)
    monkeypatch.setenv("LABKIT_SHARED_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "own"))
    assert cache.output_dir("builds", "x-1") == tmp_path / "own" / "builds" / "x-1"
    monkeypatch.setenv("LABKIT_SHARED_CACHE", str(tmp_path / "nowhere"))
    with pytest.raises(cache.CacheError, match="LABKIT_SHARED_CACHE=.*not a folder"):
        cache.output_dir("builds", "x-1")
