"""`python -m labkit`: a user's mistake is one line naming the fix (exit 2), never a traceback; --debug shows it."""

import subprocess
import sys

import pytest

from labkit.workshop import cli


def labkit(*args):
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120)


def one_line_error(done, code, text):
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and text in done.stderr, done.stderr


def test_a_mistyped_model_is_one_line_and_debug_shows_the_traceback(tmp_path):
    one_line_error(labkit("build", "nosuchmodel"), 2, "error: Model 'nosuchmodel' is neither `tiny`")
    debug = labkit("--debug", "build", "nosuchmodel")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "MissingInput" in debug.stderr


@pytest.mark.parametrize("args, text", [
    (["build", "{tmp}"], "has no config.json"),
    (["build", "{tmp}/bad"], "config.json is not valid JSON"),
    (["export-vision", "nosuch"], "is neither `tiny`"),
    (["build", "tiny", "--precision", "int3"], "Unknown precision 'int3'"),
])
def test_bad_models_and_options_are_one_line(tmp_path, capsys, args, text):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{half")
    assert cli.main([a.format(tmp=tmp_path) for a in args]) == cli.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and text in err and len(err.strip().splitlines()) == 1


def test_bad_arguments_are_refused_before_any_work(capsys):
    for args, text in ((["course", "--profile", "lapto"], "invalid choice: 'lapto'"),
                       (["env", "--profile", "lapto"], "invalid choice: 'lapto'"),
                       (["bench", "--runs", "0"], "must be at least 1, not 0")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(args)
        assert exit_.value.code == 2 and text in capsys.readouterr().err


@pytest.mark.parametrize("raised, code, text", [
    (OSError(28, "No space left on device", "/cache/builds/x"), 1, "the disk is full"),
    (PermissionError(13, "Permission denied", "/shared/models"), 1, "no permission"),
    (KeyboardInterrupt(), cli.INTERRUPTED, "interrupted"),
])
def test_disk_errors_and_interrupts_are_one_line(monkeypatch, capsys, raised, code, text):
    def handler(args):
        raise raised
    monkeypatch.setattr(cli, "_tiny", handler)
    assert cli.main(["tiny"]) == code
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1


def test_a_bug_still_shows_its_traceback(monkeypatch):
    def handler(args):
        raise KeyError("a labkit bug")
    monkeypatch.setattr(cli, "_tiny", handler)
    with pytest.raises(KeyError):
        cli.main(["tiny"])


def test_build_starts_without_its_memory_check_only_when_asked(monkeypatch, capsys):
    """`make bench-scale` decides once whether each build fits; its child builds then skip their own check."""
    from pathlib import Path

    from labkit.making import build as build_module

    class Made:
        path, size_bytes, seconds, cached = Path("out"), 1, 0.0, True

    seen = []
    monkeypatch.setattr(build_module, "build", lambda *args, **kwargs: seen.append(kwargs["check_memory"]) or Made())
    assert cli.main(["build", "tiny", "--json"]) == 0
    assert cli.main(["build", "tiny", "--json", "--no-memory-check"]) == 0
    assert seen == [True, False]
