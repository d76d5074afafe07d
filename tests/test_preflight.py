from collections import namedtuple

import preflight

Usage = namedtuple("Usage", "total used free")


def test_a_full_disk_stops_the_suite_before_it_starts_with_the_fix(tmp_path):
    cache, tmp = tmp_path / "models", tmp_path / "tmp"
    tmp.mkdir()
    full = lambda _: Usage(100e9, 99e9, 1e9)       # noqa: E731
    message = preflight.disk_shortfall(cache, tmp, disk_usage=full)
    assert "need 6.5 GB free" in message and "1.0 GB" in message and "LABKIT_CACHE" in message
    assert preflight.disk_shortfall(cache, tmp, disk_usage=lambda _: Usage(100e9, 90e9, 10e9)) is None


def test_a_warm_cache_needs_less(tmp_path):
    cache, tmp = tmp_path / "models", tmp_path / "tmp"
    tmp.mkdir()
    cache.mkdir()
    (cache / "build.onnx").write_bytes(b"\0" * 10_000_000)
    tight = lambda _: Usage(100e9, 93.5e9, 6.495e9)     # noqa: E731
    assert preflight.disk_shortfall(cache, tmp, disk_usage=tight) is None, "10 MB cached lowers the need"
    assert preflight.disk_shortfall(cache, tmp, disk_usage=lambda _: Usage(100e9, 94e9, 6.4e9))
