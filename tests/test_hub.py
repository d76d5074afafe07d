"""The laptop profile's downloads: prefetch, offline refusals, Microsoft's published ONNX build from the cache."""

import json
import shutil
import subprocess
import sys

import pytest

from labkit import bench, hub, models


def fake_hub_cache(root, repo, files: dict, commit="0123456789abcdef0123456789abcdef01234567"):
    """A folder laid out like the Hugging Face cache (refs/main -> snapshots/<commit>/...)."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copy2(content, target)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_offline_prefetch_names_every_missing_download(hub_cache):
    with pytest.raises(hub.NotCached) as err:
        hub.prefetch("laptop", offline=True, out=lambda *_: None)
    message = str(err.value)
    assert "make prefetch PROFILE=laptop" in message
    assert "hf download microsoft/Phi-3.5-mini-instruct" in message
    assert 'hf download microsoft/Phi-3.5-mini-instruct-onnx --include "cpu_and_mobile/' in message


def test_prefetch_of_phi4_mini_adds_its_checkpoint_and_published_build(hub_cache):
    phi4 = models.HUB_IDS["phi4-mini"]
    with pytest.raises(hub.NotCached) as err:
        hub.prefetch("laptop", offline=True, out=lambda *_: None, model=phi4)
    message = str(err.value)
    assert f"make prefetch PROFILE=laptop MODEL={phi4}" in message and f"hf download {phi4}\n" in message + "\n"
    published = 'microsoft/Phi-4-mini-instruct-onnx --include "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4/*"'
    assert f"hf download {published}" in message
    assert [d.repo for d in hub.downloads("gpu", phi4)][-1] == phi4
    assert hub.published_variant(phi4) == "phi4-cpu-int4" and hub.published_variant("tiny") is None
    with pytest.raises(ValueError, match="laptop and gpu"):
        hub.downloads("cpu", phi4)
    with pytest.raises(ValueError, match="Phi-4-mini-instruct"):
        hub.downloads("laptop", "someone/else")


def test_cpu_profile_downloads_nothing(hub_cache):
    lines = []
    assert hub.prefetch("cpu", offline=True, out=lines.append) == []
    assert "downloads nothing" in lines[0]


def test_offline_prefetch_reports_sizes_of_a_filled_cache(hub_cache):
    for item in hub.PROFILE_DOWNLOADS["laptop"]:
        folder = f"{item.folder}/" if item.folder else ""
        fake_hub_cache(hub_cache, item.repo, {f"{folder}config.json": b"{}", f"{folder}weights.bin": b"x" * 1000})
    lines = []
    rows = hub.prefetch("laptop", offline=True, out=lines.append)
    assert [r["repo"] for r in rows] == [i.repo for i in hub.PROFILE_DOWNLOADS["laptop"]]
    assert "GB in all for the laptop profile" in lines[-1]


def test_prefetch_cli_fails_at_once_offline(hub_cache):
    done = subprocess.run([sys.executable, "-m", "labkit", "prefetch", "--profile", "gpu"], capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "hf download microsoft/Phi-3.5-vision-instruct" in done.stderr


def test_published_onnx_build_loads_from_a_hub_cache_layout(hub_cache, tiny_builds):
    """Laid out as microsoft/Phi-3.5-mini-instruct-onnx is on the hub: the folder og loads, measured as lab 01 does."""
    source = tiny_builds["int4"].path
    repo, variant = hub.PUBLISHED_ONNX["cpu-int4"]
    onnx_name = f"phi-3.5-mini-instruct-{variant.split('/')[-1]}.onnx"
    config = json.loads((source / "genai_config.json").read_text())
    config["model"]["decoder"]["filename"] = onnx_name
    files = {f"{variant}/{f.name}": f for f in source.iterdir() if f.name not in ("model.onnx", "genai_config.json")}
    files[f"{variant}/{onnx_name}"] = source / "model.onnx"
    files[f"{variant}/genai_config.json"] = json.dumps(config).encode()
    fake_hub_cache(hub_cache, repo, files)

    folder = hub.published_onnx("cpu-int4")
    assert folder.name == variant.split("/")[-1]
    speed = bench.speed(folder, prompt_tokens=16, new_tokens=8, runs=1)
    assert speed["decode_tok_s"] > 0
    assert bench.weight_bytes_per_token(folder) == bench.weight_bytes_per_token(source)


def test_published_variant_is_checked():
    with pytest.raises(ValueError, match="cpu-int4"):
        hub.published_onnx("npu-int2")
