"""`make bench-peers`'s harness, with fake engines (the real peers take ~15 minutes to install) and the real
ONNX Runtime GenAI worker on the tiny builds."""

import json
import sys

import pytest

from labkit import peers, sizing

# A stand-in engine: prints what labkit/peer_worker.py prints. Speeds come from the precision; a peer set to
# disagree changes its tokens after position 8; one set to wobble gives other tokens on every run.
FAKE_WORKER = r'''
import json, os, sys
request = json.loads(sys.argv[1])
if request.get("job") == "kernels":
    scale = float(os.environ.get("FAKE_SPEED", "1"))
    print(json.dumps({"prefill_gflop_s": {v: 100.0 * scale for v in request["variants"]},
                      "decode_gb_s": {v: 10.0 * scale for v in request["variants"] if v != "fp32"}}))
    raise SystemExit(0)
if os.environ.get("FAKE_SEGFAULT"):
    import signal
    os.kill(os.getpid(), signal.SIGSEGV)
if os.environ.get("FAKE_FAIL"):
    print("fake engine: could not load " + request["model"], file=sys.stderr)
    raise SystemExit(3)
speed = {"int4": 300.0, "int8": 150.0, "fp32": 50.0, "q4_k_m": 240.0}[request["precision"]]
speed *= 0.8 if request["model"].endswith("int4_b32.bin") else 1.0
speed *= float(os.environ.get("FAKE_SPEED", "1"))
runs = []
for run in range(request["runs"]):
    tokens = [(len(request["prompt_ids"]) + 7 * i) % 97 for i in range(request["new_tokens"])]
    if os.environ.get("FAKE_DISAGREE") and request["precision"] == "fp32":
        tokens[8:] = [1] * (len(tokens) - 8)
    if os.environ.get("FAKE_WOBBLE"):
        tokens[-1] += run
    runs.append(tokens)
print("some engine log line")
print(json.dumps({"tokens": runs, "prefill_tok_s": 10 * speed, "decode_tok_s": speed, "version": "fake-1"}))
'''


def fake_engine(name, tmp_path, env=None, keys=("int4", "int8", "fp32"), calls=None):
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)

    def prepare(bench_dir, workdir, engine):
        if calls is not None:
            calls.append(name)
        out = []
        for key in keys:
            model = workdir / f"{name}-{key}.bin"
            model.write_bytes(b"x" * {"int4": 100, "int8": 200, "fp32": 400, "q4_k_m": 110, "int4_b32": 90}[key])
            out.append(peers.Variant(name, key, model, model.stat().st_size,
                                     precision="int4" if key == "int4_b32" else ""))
        return out

    return peers.Engine(name, sys.executable, prepare, worker=worker, env=env or {})


@pytest.fixture
def bench_dir(tiny_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    return tiny_dir


def test_fake_engines_give_the_documented_json_table_and_ratios(bench_dir, tmp_path, capsys):
    engines = [fake_engine("ortgenai", tmp_path, keys=("int4", "int8", "fp32", "int4_b32")),
               fake_engine("llamacpp", tmp_path, {"FAKE_SPEED": "0.8", "FAKE_DISAGREE": "1"},
                           keys=("int4", "int8", "fp32", "q4_k_m")),
               fake_engine("openvino", tmp_path, {"FAKE_SPEED": "1.25"})]
    out = tmp_path / "bench-peers.json"
    result = peers.run_bench_peers(engines, bench_dir, runs=2, new_tokens=16, threads=2, out=out, ids=[5, 6, 7])

    written = json.loads(out.read_text())
    assert written == result
    assert set(written["engines"]) == {"ortgenai", "llamacpp", "openvino"}
    assert set(written["engines"]["llamacpp"]) == {"int4", "int8", "fp32", "q4_k_m"}
    for variants in written["engines"].values():
        for row in variants.values():
            assert set(row) == {"decode_tok_s", "prefill_tok_s", "size_bytes"}
    assert written["engines"]["openvino"]["int4"] == {"decode_tok_s": 375.0, "prefill_tok_s": 3750.0,
                                                      "size_bytes": 100}
    # 300 / max(240, 192 (Q4_K_M), 375): the course is behind OpenVINO here, and the table says so.
    assert written["ratios"]["int4"] == {"decode": {"fastest_peer": "openvino", "variant": "int4", "ratio": 0.8},
                                         "prefill": {"fastest_peer": "openvino", "variant": "int4", "ratio": 0.8}}
    assert written["ratios"]["int8"]["decode"] == {"fastest_peer": "openvino", "variant": "int8", "ratio": 0.8}
    assert written["fp32_agreement"] == {"llamacpp": 0.5, "openvino": 1.0}
    assert written["settings"]["orders"] == 2 and written["versions"]["openvino"] == "fake-1"
    printed = capsys.readouterr().out
    assert "int4: ONNX Runtime GenAI prefills at 0.80× the fastest peer (OpenVINO GenAI int4)" in printed
    assert "llama.cpp vs ONNX Runtime GenAI: 50% agree" in printed
    # The tiny model: a 32064 x 192 head beside four thin layers, so most of its matrix weights
    share = written["settings"]["lm_head_share"]
    assert 0.5 < share < 0.9 and f"the LM head is {share:.0%} of this model's matrix weights" in printed
    assert written["engines"]["ortgenai"]["int4_b32"]["decode_tok_s"] == 240.0
    assert "blocks of 32, like for like with llama.cpp's Q4_0: decode 1.00×, prefill 1.00× (its prefill also" in printed
    assert peers.read(out) == written
    # the tables name llama.cpp's files by their GGUF types, every engine's rows in one order (4-bit first)
    shown = [(row["engine"], row["variant"]) for row in peers.rows(written)]
    assert shown[4:8] == [("llama.cpp", "int4 (Q4_0)"), ("llama.cpp", "Q4_K_M"), ("llama.cpp", "int8 (Q8_0)"),
                          ("llama.cpp", "fp32")]
    assert [variant for engine, variant in shown if engine == "ONNX Runtime GenAI"] == ["int4", "int4_b32", "int8",
                                                                                         "fp32"]
    assert "fp32 folder" not in printed                       # fake OpenVINO fp32 is as large as ONNX Runtime's
    bf16 = {**written, "engines": {**written["engines"], "openvino": {
        **written["engines"]["openvino"], "fp32": {**written["engines"]["openvino"]["fp32"], "size_bytes": 200}}}}
    assert "OpenVINO GenAI's fp32 folder is 0 MB against 0 MB: it keeps the checkpoint's bfloat16" in "\n".join(
        peers.summary_lines(bf16))
    # The kernels: asked of ONNX Runtime and OpenVINO only, each for its own variants, against the machine's bandwidth.
    kernels = written["kernels"]
    assert set(kernels["engines"]) == {"ortgenai", "openvino"} and kernels["memory_read_gb_s"] > 1
    assert kernels["engines"]["ortgenai"]["prefill_gflop_s"] == {"int4": 100.0, "int4_b32": 100.0, "int8_qgemm": 100.0,
                                                                 "fp32": 100.0}
    assert kernels["engines"]["openvino"] == {"prefill_gflop_s": {"int4": 125.0}, "decode_gb_s": {"int4": 12.5}}
    assert ("the kernels alone, one 3072×8192 MatMul of 128 tokens, GFLOP/s: ONNX Runtime GenAI int4 100, "
            "int4 blocks of 32 100, int8 GEMM (quantize_dynamic, not the course's INT8) 100, fp32 100; "
            "OpenVINO GenAI int4 125") in printed
    assert ("what int8 arithmetic reaches on this CPU, ONNX Runtime's int8 GEMM (100 GFLOP/s, `quantize_dynamic`'s "
            "weights, as lab 02's image encoder): ONNX Runtime GenAI's int4 1.00 of it, "
            "OpenVINO GenAI's int4 1.25 of it") in printed
    bound = kernels["memory_read_gb_s"]
    assert f"OpenVINO GenAI 12.5 GB/s ({12.5 / bound:.2f} of it)" in printed
    assert written["machine"]["int8_instructions"] == sizing.int8_instructions()
    assert peers.source_line(written).startswith("Measured on this machine by `make bench-peers`")
    assert list(peers.table(written).index.get_level_values("engine")).count("llama.cpp") == 4
    assert len(peers.plot(written).axes[0].patches) == 3 * 5


def test_without_a_run_here_the_labs_show_the_reference_run_and_say_so(tmp_path, monkeypatch):
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"settings": {"threads": 2}, "engines": {}, "measured_on": "2026-12-05",
                                     "machine": {"cores": 2, "int8_instructions": "AVX2 (no VNNI)"}}))
    monkeypatch.setattr(peers, "REFERENCE", reference)
    result = peers.read(tmp_path / "absent.json")
    assert result["reference"] is True and result["measured_on"] == "2026-12-05"
    line = peers.source_line(result)
    assert line.startswith("The course's reference run") and "AVX2 (no VNNI)" in line and "2026-12-05" in line
    assert peers.read(tmp_path / "absent.json", reference=False) is None


def test_a_missing_engine_venv_stops_before_any_export(bench_dir, tmp_path):
    calls = []
    engines = [fake_engine("ortgenai", tmp_path, calls=calls),
               peers.Engine("llamacpp", tmp_path / "no-venv" / "bin" / "python", peers.prepare_llamacpp)]
    with pytest.raises(peers.PeerError, match=r"no-venv.*make bench-peers"):
        peers.run_bench_peers(engines, bench_dir, out=tmp_path / "out.json", ids=[1, 2])
    assert calls == [] and not (tmp_path / "out.json").exists()


def test_llamacpps_crash_on_an_amx_cpu_is_named_with_the_way_out(bench_dir, tmp_path, monkeypatch):
    """llama-cpp-python 0.3.36's AMX kernels segfault at the first token on some AMX CPUs (measured here)."""
    engines = [fake_engine("llamacpp", tmp_path, {"FAKE_SEGFAULT": "1"})]
    monkeypatch.setattr(peers.sizing, "cpu_flags", lambda: {"avx512f", "amx_int8"})
    with pytest.raises(peers.PeerError, match=r"(?s)llama.cpp: timing int4 failed \(exit -11\).*AMX.*20824.*"
                                              r"on a CPU without AMX"):
        peers.run_bench_peers(engines, bench_dir, runs=1, new_tokens=4, out=tmp_path / "out.json", ids=[1, 2])
    monkeypatch.setattr(peers.sizing, "cpu_flags", lambda: {"avx2"})       # elsewhere a crash is only a crash
    with pytest.raises(peers.PeerError) as crashed:
        peers.run_bench_peers(engines, bench_dir, runs=1, new_tokens=4, out=tmp_path / "out.json", ids=[1, 2])
    assert "exit -11" in str(crashed.value) and "AMX" not in str(crashed.value)
    assert isinstance(peers.sizing.cpu_flags(), set)


def test_a_failing_engine_is_named_with_its_error_and_nothing_is_written(bench_dir, tmp_path):
    engines = [fake_engine("ortgenai", tmp_path), fake_engine("openvino", tmp_path, {"FAKE_FAIL": "1"})]
    with pytest.raises(peers.PeerError, match=r"OpenVINO GenAI: timing int4 failed \(exit 3\)[\s\S]*could not load"):
        peers.run_bench_peers(engines, bench_dir, runs=1, new_tokens=4, out=tmp_path / "out.json", ids=[1, 2])
    assert not (tmp_path / "out.json").exists()


def test_fp32_runs_that_give_other_tokens_are_refused_and_quantized_ones_noted(bench_dir, tmp_path):
    engines = [fake_engine("ortgenai", tmp_path, {"FAKE_WOBBLE": "1"})]
    with pytest.raises(peers.PeerError, match="fp32: greedy runs gave different tokens"):
        peers.run_bench_peers(engines, bench_dir, runs=2, new_tokens=4, out=tmp_path / "out.json", ids=[1, 2])
    engines = [fake_engine("ortgenai", tmp_path, {"FAKE_WOBBLE": "1"}, keys=("int4",))]
    result = peers.run_bench_peers(engines, bench_dir, runs=2, new_tokens=4, out=tmp_path / "out.json", ids=[1, 2])
    assert result["varying_tokens"] == ["ortgenai/int4"]
    assert "varied between runs" in peers.format_table(result)


def test_bad_settings_and_unknown_engines_are_refused_up_front(bench_dir, tmp_path):
    with pytest.raises(peers.PeerError, match="new_tokens"):
        peers.run_bench_peers([fake_engine("ortgenai", tmp_path)], bench_dir, new_tokens=1, ids=[1])
    with pytest.raises(peers.PeerError, match="choose from ortgenai, llamacpp, openvino"):
        peers.default_engines(["vllm"])


def test_the_real_onnxruntime_genai_worker_on_the_tiny_builds(tiny_builds, bench_dir, tmp_path):
    def prepare(bench_dir, workdir, engine):
        return [peers.Variant("ortgenai", p, tiny_builds[p].path, tiny_builds[p].size_bytes) for p in ("int4", "fp32")]

    engine = peers.Engine("ortgenai", sys.executable, prepare)
    result = peers.run_bench_peers([engine], bench_dir, runs=2, new_tokens=12, threads=1, orders=1,
                                   out=tmp_path / "out.json", ids=[10, 20, 30, 40, 50],
                                   kernel_shape={"k": 256, "n": 512, "tokens": 16, "layers": 2,
                                                 "target_seconds": 0.01})
    rows = result["engines"]["ortgenai"]
    assert set(rows) == {"int4", "fp32"}
    assert all(row["decode_tok_s"] > 0 and row["prefill_tok_s"] > 0 for row in rows.values())
    assert rows["int4"]["size_bytes"] < rows["fp32"]["size_bytes"]
    assert result["versions"]["ortgenai"] != "?"
    # The worker's kernels job, for real: MatMulNBits at both block sizes, MLAS's int8 GEMM and fp32 MatMul, timed.
    kernels = result["kernels"]["engines"]["ortgenai"]
    assert set(kernels["prefill_gflop_s"]) == {"int4", "int4_b32", "int8_qgemm", "fp32"} and set(
        kernels["decode_gb_s"]) == {"int4", "int4_b32", "int8_qgemm"}
    assert all(v > 0 for row in kernels.values() for v in row.values())


def test_the_committed_reference_is_one_whole_run_of_the_three_engines():
    reference = json.loads(peers.REFERENCE.read_text())     # `make bench-peers-reference`
    assert set(reference["engines"]) == {"ortgenai", "llamacpp", "openvino"}
    assert set(reference["engines"]["ortgenai"]) == {"int4", "int8", "fp32", "int4_b32"}
    assert reference["fp32_agreement"] == {"llamacpp": 1.0, "openvino": 1.0}
    assert set(reference["kernels"]["engines"]) == {"ortgenai", "openvino"}
    assert reference["machine"]["int8_instructions"] and reference["measured_on"]
    assert "/" not in reference["settings"]["model"]          # no folder of the machine that measured it
    assert set(reference["ratios"]) == {"int4", "int8", "fp32"}



def test_the_int8_yardstick_kernel_is_onnxruntimes_dynamic_quantization():
    """`int8_qgemm`: int8 weights per output channel (a quarter of fp32's bytes plus scales) through MLAS's integer
    GEMM, as lab 02's image encoder runs, and close to the fp32 MatMul it was made from."""
    import numpy as np

    from labkit.measuring import peer_worker

    run, weight_bytes = peer_worker._ort_kernel([(256, 512)], "int8_qgemm", 1, np.random.default_rng(0))
    fp32_run, fp32_bytes = peer_worker._ort_kernel([(256, 512)], "fp32", 1, np.random.default_rng(0))
    assert 0.25 < weight_bytes / fp32_bytes < 0.27
    a = np.random.default_rng(1).standard_normal((4, 256), dtype=np.float32)
    (quantized,), (exact,) = run(a), fp32_run(a)
    assert 0 < np.linalg.norm(quantized - exact) / np.linalg.norm(exact) < 0.05
