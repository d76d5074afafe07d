"""The course report: table and plots from results.json, and a report.html that renders in a browser."""

import json
import re
import shutil
import subprocess

import pytest

from labkit import report

RESULTS = {
    "01_builder_quantization": {"execution_provider": "cpu", "builds": {
        "fp32": {"size_mb": 7.5, "load_s": 0.05, "prefill_tok_s": 20000, "decode_tok_s": 4000, "perplexity": 3.9,
                 "agreement_fp32": 1.0, "perplexity_vs_fp32_%": 0.0},
        "int4-rtn-b32": {"size_mb": 3.3, "load_s": 0.01, "prefill_tok_s": 21000, "decode_tok_s": 5300,
                         "perplexity": 3.92, "agreement_fp32": 0.5, "perplexity_vs_fp32_%": 0.5},
        "int4": {"size_mb": 3.3, "load_s": 0.01, "prefill_tok_s": 21000, "decode_tok_s": 5200, "perplexity": 3.93,
                 "agreement_fp32": 0.6, "perplexity_vs_fp32_%": 0.7}}},
    "02_vision_export": {"exports": {"fp32": "/nonexistent/tiny-vision-fp32"},
                         "qa": {"fp32": {"image tokens": 1921, "prefill tok/s": 4000.0, "decode tok/s": 600.0}}},
    "03_olive_awq_lora": {
        "rtn_vs_awq": [
            {"model": "lab model", "method": "rtn-int4", "perplexity": 1700, "kl_x1e3": 28, "size_mb": 3.3,
             "fp32 perplexity": 1695, "fp32 size_mb": 7.5},
            {"model": "lab model", "method": "awq-int4", "perplexity": 1690, "kl_x1e3": 48, "size_mb": 3.3},
            {"model": "outliers (4 ch x30)", "method": "rtn-int4", "perplexity": 1670, "kl_x1e3": 150, "size_mb": 3.3},
            {"model": "outliers (4 ch x30)", "method": "awq-int4", "perplexity": 1685, "kl_x1e3": 48, "size_mb": 3.3}],
        "finetune": {"train_losses": [[5, 7.0], [10, 5.0]], "eval_loss_before": 7.4, "eval_loss_after": 3.5},
        "onnx_eval_perplexity": {"base": 1590.0, "adapter": 37.0},
        "paraphrase_rates": {"base": {"city_named": 0.3, "fact_stated": 0.1, "questions": 448},
                             "travel adapter": {"city_named": 0.8, "fact_stated": 0.4, "questions": 448}}},
    "04_inference": {"overhead": {"overhead_%": 2.0},
                     "followup_rates": {"first_names_city": 0.8, "followup_keeps_city": 0.85,
                                        "followup_states_fact": 0.3, "chats": 224}},
    "course": {"notebook_seconds": {"00_environment_check": 28.0, "total": 200.0}},
}


def test_variants_table_has_every_variant():
    table = report.variants_table(RESULTS)
    assert len(table) == 3 + 1 + 1 + 4 + 2
    assert table.loc["fp32 (lab model)", ["ppl_travel", "kl_x1e3", "size_mb"]].tolist() == [1695, 0.0, 7.5]
    assert "fp32 (outliers (4 ch x30))" not in table.index          # that row came without its FP32 measures
    assert table.loc["Phi-3.5-vision fp32", "decode_tok_s"] == 600.0
    assert list(table.columns[:4]) == ["lab", "method", "precision", "ep"]
    assert table.loc["int4-rtn-b32", "method"] == "rtn-b32"
    assert table.loc["AWQ + LoRA int4 (adapter)", "adapter"] == "travel"
    tiny = {**RESULTS, "02_vision_export": {**RESULTS["02_vision_export"], "model": "tiny-vision"}}
    assert "tiny-vision fp32" in report.variants_table(tiny).index, "the tiny model is not labelled Phi-3.5-vision"


def test_headline_ratios():
    h = report.headline(RESULTS)
    assert list(h)[:5] == ["base: names the city asked", "base: states the city's fact",
                           "travel adapter: names the city asked",
                           "travel adapter: states the city's fact",
                           "travel adapter: follow-up keeps the city"], "the payoff leads"
    assert h["travel adapter: names the city asked"] == "80%"
    assert h["travel adapter: follow-up keeps the city"] == "85%"
    assert h["travel adapter: follow-up states the fact asked"] == "30%", "the unflattering rate beside it"
    assert h["int4 size / fp32"] == pytest.approx(0.44, abs=0.01)
    assert h["AWQ KL / RTN KL (outlier model)"] == pytest.approx(0.32, abs=0.01)
    assert h["AWQ KL / RTN KL (lab model)"] == pytest.approx(48 / 28, abs=0.01), "both rows, where AWQ loses too"
    assert h["course wall time (s)"] == 200.0
    assert not any(key.startswith("Phi-3.5-mini at real size") for key in h)
    real = {"int4": {"size_bytes": 2.8e9, "decode_tok_s": 6.0}, "fp32": {"size_bytes": 15.3e9, "decode_tok_s": 1.5}}
    h = report.headline(RESULTS, real)     # Phi-3.5-mini's own ratios beside the tiny model's
    assert h["Phi-3.5-mini at real size: int4 decode / fp32"] == 4.0
    assert h["Phi-3.5-mini at real size: int4 size / fp32"] == pytest.approx(0.183, abs=0.001)
    assert h["int4 size / fp32"] == pytest.approx(0.44, abs=0.01)
    laptop = {**RESULTS, "01_builder_quantization": {"builds": {
        "int4": {"size_mb": 2778.0, "decode_tok_s": 6.0}, "int8": {"size_mb": 4639.0, "decode_tok_s": 4.5}}}}
    h = report.headline(laptop)            # no FP32 on a laptop: INT4 against INT8
    assert "int4 size / fp32" not in h and h["int4 size / int8"] == pytest.approx(0.599, abs=0.001)
    assert h["int4 decode / int8"] == pytest.approx(1.333, abs=0.001)


def test_load_results_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make course"):
        report.load_results(tmp_path)


def test_plots_have_four_panels():
    fig = report.plots(RESULTS)
    assert len(fig.axes) == 4 and all(ax.has_data() for ax in fig.axes)


CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.tables = document.querySelectorAll("table").length;
});
</script></body>"""


def browser():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render_in_chromium(html_path, tmp_path):
    """Load a copy of the page (plus a small checking script) in headless Chromium; return the DOM it built."""
    page = tmp_path / "checked.html"
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", CHECK), encoding="utf-8")
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_html_renders_with_table_and_images(tmp_path):
    if not browser():
        pytest.skip("needs Chromium: `apt-get install chromium` (.ci/run installs it)")
    from labkit import course, paths
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(RESULTS))
    course.run_notebook(paths.NOTEBOOKS / "05_results.ipynb", run, {"results_dir": str(run)})
    html = report.export_html(run / "05_results.ipynb", run / "report.html")
    text = html.read_text()
    assert "import labkit" not in text and "start_lab(" not in text, "the report shows results, not code"
    dom = render_in_chromium(html, tmp_path)
    attrs = dict(re.findall(r'data-(images|broken|tables)="(\d+)"', dom))
    assert int(attrs["tables"]) >= 2, "headline and variants tables"
    assert int(attrs["images"]) >= 1 and attrs["broken"] == "0"
    assert "AWQ + LoRA int4 (adapter)" in dom


def test_readable_table_shows_dashes_for_unmeasured_cells():
    shown = report.readable(report.variants_table(RESULTS))
    assert shown.loc["AWQ + LoRA int4 (adapter)", "decode_tok_s"] == "–"
    assert shown.loc["fp32", "ppl_heldout"] == 3.9 and shown.loc["fp32", "ppl_travel"] == "–"


def test_the_schema_refuses_unknown_keys_and_wrong_types(tmp_path):
    from labkit import results

    with pytest.raises(results.ResultsError, match=r"\['speed'\].*add them to Builds"):
        results.record("01_builder_quantization", {"speed": 1.0}, tmp_path / "results.json")
    with pytest.raises(results.ResultsError, match="two_images_tokens must be int"):
        results.record("02_vision_export", {"two_images_tokens": "many"}, tmp_path / "results.json")
    with pytest.raises(results.ResultsError, match="did not record"):
        results.check("05_results", {"variants": 3}, complete=True)
    assert not (tmp_path / "results.json").exists(), "nothing written on bad input"
    for lab, values in RESULTS.items():
        results.check(lab, values)


def test_report_labels_rows_with_the_labs_execution_provider():
    data = {"01_builder_quantization": {"execution_provider": "cuda", "builds": {"int4": {"size_mb": 1}}},
            "02_vision_export": {"execution_provider": "cuda", "exports": {"fp16": ""}, "qa": {"fp16": {}}},
            "03_olive_awq_lora": {"execution_provider": "cuda", "rtn_vs_awq": [{"model": "m", "method": "rtn-int4"}],
                                  "onnx_eval_perplexity": {"base": 2.0}}}
    assert set(report.variants_table(data)["ep"]) == {"cuda"}


def test_the_report_shows_each_labs_minutes_and_peak_memory_under_the_runs_limit():
    data = {"01_builder_quantization": {"profile": "laptop"},
            "course": {"profile": "laptop", "shadows": True, "memory_limit_bytes": 16_000_000_000,
                       "notebook_seconds": {"00_environment_check": 60.0, "01_builder_quantization": 1290.0,
                                            "total": 1350.0},
                       "peak_rss_bytes": {"00_environment_check": 900_000_000,
                                          "01_builder_quantization": 9_400_000_000}}}
    table = report.course_table(data)
    assert table.loc["01_builder_quantization"].tolist() == ["laptop", 21.5, 9.4]
    assert list(table.index) == ["00_environment_check", "01_builder_quantization"]   # no "total" row
    lines = report.course_lines(data)
    assert lines[0].startswith("profile laptop, Phi-3.5 shadows (random weights") and "22.5 min" in lines[0]
    assert lines[1] == "largest peak: 9.4 GB in 01_builder_quantization, of 16.0 GB (a memory limit)"
    assert len(lines) == 2                                     # a record from before the cache was noted
    data["course"]["cache_bytes_at_start"] = 5_300_000_000
    assert report.course_lines(data)[2].startswith("started with 5.3 GB in the model cache")
    data["course"].update(cold_cache=True)
    assert report.course_lines(data)[2] == "started on an empty model cache: a first run's minutes"
    assert len(report.plot_course(data).axes) == 2
    assert report.course_table({}).empty and "one by one" in report.course_lines({})[0]


def test_every_built_folder_has_its_size_in_the_table(tmp_path):
    """The fp32-encoder export and the fine-tuned model with and without its adapter file are folders too."""
    def folder(name: str, files: dict) -> str:
        (tmp_path / name).mkdir()
        for file, size in files.items():
            (tmp_path / name / file).write_bytes(b"x" * size)
        return str(tmp_path / name)

    onnx_dir = folder("onnx", {"model.onnx": 3_000_000, "adapter_weights.onnx_adapter": 500_000})
    results = {**RESULTS,
               "02_vision_export": {"model": "tiny-vision",
                                    "exports": {"int4": folder("int8-encoder", {"a": 2_000_000})},
                                    "fp32_encoder_exports": {"int4": folder("fp32-encoder", {"a": 2_400_000})},
                                    "qa": {"int4": {"decode tok/s": 1.0}, "int4, fp32 encoder": {"decode tok/s": 1.0}}},
               "03_olive_awq_lora": {**RESULTS["03_olive_awq_lora"], "onnx_dir": onnx_dir,
                                     "adapter": f"{onnx_dir}/adapter_weights.onnx_adapter"}}
    sizes = report.variants_table(results)["size_mb"]
    assert sizes["tiny-vision int4"] == 2.0 and sizes["tiny-vision int4, fp32 encoder"] == 2.4
    assert sizes["AWQ + LoRA int4 (base)"] == 3.0 and sizes["AWQ + LoRA int4 (adapter)"] == 3.5
