"""Lab 00's plan and lab 03's model choice (labkit.plan)."""

import json

import pytest
from helpers import notebook_defaults

from labkit import plan, shadow, sizing

GB = 1e9


# ------------------------------------------------------------------ the laptop profile's plan
def test_lab03_takes_the_tiny_model_on_a_laptop_unless_asked():
    mini = "microsoft/Phi-3.5-mini-instruct"
    model, why = plan.training_model("laptop", mini, 128, 120)
    assert model == "tiny" and "full_size_training = True" in why
    hours = float(why.split("about ")[1].split(" h")[0])
    assert 5 < hours < 20          # per-layer measurements on shadows: ≈ 3.6 h AWQ + 6.2 h LoRA on 2 cores
    assert plan.training_model("laptop", mini, 128, 120, full_size_training=True) == (mini, "")
    assert plan.training_model("cpu", "tiny", 128, 120) == ("tiny", "")
    assert plan.training_model("laptop", "some/local-folder", 128, 120)[0] == "some/local-folder"
    fewer = sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), 32, 30)["hours"]
    assert fewer < sizing.training_estimate(shadow.shadow_config("phi-3.5-mini"), 128, 120)["hours"]


def test_lab00_plan_judges_each_lab_against_this_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(plan, "_measured_laptop", lambda: {})     # the estimates, before any laptop course ran
    monkeypatch.setattr(plan, "LAPTOP_TRAINING_SHEET", tmp_path / "absent.json")
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "memory_limited_by": "RAM", "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01" and not r["what"].startswith(plan.OPTIONAL)]
    assert [r["fits_here"] for r in builds] == ["yes", "yes"]         # INT4 and INT8 builds, each under 12 GB
    int4 = sizing.build_requirement("int4", shadow.shadow_config())    # from the reference measurements
    export = sizing.vision_export_requirement(shadow.shadow_config("phi-3.5-vision"))
    vision = next(r for r in plan.lab_plan("laptop") if r["lab"] == "02")
    need = max(export["peak_rss_bytes"], plan.VISION_PROMPT_RSS_BYTES)    # export, then an image prompt
    assert vision["peak_ram_gb"] == round(need / GB, 1)
    assert vision["fits_here"] == ("yes" if need <= 12 * GB else "no")
    assert {r["lab"] for r in plan.lab_plan("laptop")} == {"00", "01", "02", "03", "04", "05"}
    downloads = next(r for r in plan.lab_plan("laptop") if r["lab"] == "00")
    assert downloads["disk_gb"] == pytest.approx(18.7)
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(8 * GB),
                                                    "available_ram_bytes": int(6 * GB),
                                                    "memory_limited_by": "cgroup", "free_disk_bytes": int(100 * GB)})
    assert all(r["fits_here"] == "yes" for r in plan.lab_plan("cpu"))
    plan.refuse_unless_fits(plan.lab_plan("cpu"), "cpu")      # the tiny models: never refused
    short = round((int4["peak_rss_bytes"] - 0.5 * GB) / GB, 1)        # just under what the INT4 build needs
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int((short + 2) * GB),
                                                    "available_ram_bytes": int(short * GB),
                                                    "memory_limited_by": "cgroup", "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01" and not r["what"].startswith(plan.OPTIONAL)]
    assert [r["fits_here"] for r in builds] == ["no", "no"]
    with pytest.raises(plan.DoesNotFit) as refused:
        plan.refuse_unless_fits(plan.lab_plan("laptop"), "laptop")
    assert f"lab 01 (build Phi-3.5-mini INT4) needs {int4['peak_rss_bytes'] / GB:.1f} GB of RAM" in str(refused.value)
    assert f"{short:.1f} GB of RAM (a cgroup limit" in str(refused.value)
    assert "Nothing was downloaded" in str(refused.value)


def test_the_laptop_plan_shows_the_measured_course_one_row_per_lab(monkeypatch, tmp_path):
    """With a laptop course's run sheet, each lab's minutes and peak memory are the measured ones."""
    measured = {"01": {"minutes": 21.5, "peak_rss_bytes": int(9.4 * GB), "basis": "measured: test"},
                "02": {"minutes": 18.0, "peak_rss_bytes": int(13.2 * GB), "basis": "measured: test"}}
    monkeypatch.setattr(plan, "_measured_laptop", lambda: measured)
    monkeypatch.setattr(plan, "LAPTOP_TRAINING_SHEET", tmp_path / "absent.json")
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 2, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "memory_limited_by": "RAM", "free_disk_bytes": int(100 * GB)})
    rows = {r["lab"]: r for r in plan.lab_plan("laptop") if not r["what"].startswith(plan.OPTIONAL)}
    assert len([r for r in plan.lab_plan("laptop") if not r["what"].startswith(plan.OPTIONAL)]) == 6
    builds = sum(round(sizing.build_requirement(p, shadow.shadow_config())["size_bytes"] / GB, 1)
                 for p in ("int4", "int8"))                            # each build's folder, as the plan rounds it
    assert (rows["01"]["minutes"], rows["01"]["peak_ram_gb"]) == (21.5, 9.4)
    assert rows["01"]["disk_gb"] == pytest.approx(builds), "the measured sheet keeps the builds' disk"
    assert "INT4" in rows["01"]["what"] and "INT8" in rows["01"]["what"]
    assert rows["02"]["fits_here"] == "no" and rows["01"]["fits_here"] == "yes"
    assert rows["04"]["basis"].startswith("measured: INT4 shadow")        # not in the sheet: the estimate stays


def test_the_committed_laptop_sheet_covers_every_lab_under_16_gb():
    sheet = json.loads(plan.LAPTOP_SHEET.read_text())
    assert sheet["profile"] == "laptop" and sorted(sheet["labs"]) == ["00", "01", "02", "03", "04", "05"]
    assert 0 < sheet["memory_limit_bytes"] <= 16e9
    assert all(0 < row["peak_rss_bytes"] <= sheet["memory_limit_bytes"] for row in sheet["labs"].values())


def test_docs_show_the_committed_laptop_sheet_as_it_is():
    """docs/real-size.md's laptop-course table is the sheet `make laptop-sheet` wrote, not typed numbers."""
    from labkit import paths

    sheet = json.loads(plan.LAPTOP_SHEET.read_text())
    assert plan.sheet_markdown(sheet) in (paths.REPO / "docs" / "real-size.md").read_text()


TRAINING_SHEET = {
    "profile": "laptop", "shadows": True, "measured_on": "2026-12-02", "cores": 2, "memory_limit_bytes": int(16e9),
    "total_minutes": 70.0,
    "labs": {"03": {"notebook": "03_olive_awq_lora", "minutes": 41.0, "peak_rss_bytes": int(11.5 * GB)},
             "04": {"notebook": "04_inference", "minutes": 29.0, "peak_rss_bytes": int(9.0 * GB)}},
    "training": {"model": "microsoft/Phi-3.5-mini-instruct",
                 "recipe": {"calibration_samples": 16, "awq_grid": 10, "finetune_steps": 100},
                 "steps": [{"step": "AWQ", "minutes": 16.2, "peak memory GB": 10.9,
                            "this run": "cached (made earlier)"},
                           {"step": "LoRA fine-tune", "minutes": 8.4, "peak memory GB": 11.6, "this run": "made"},
                           {"step": "ONNX export with adapter", "minutes": 5.9, "peak memory GB": 9.2,
                            "this run": "made"}]}}


def test_full_size_training_is_planned_from_its_measured_sheet_and_never_refuses(monkeypatch, tmp_path):
    sheet = tmp_path / "laptop-training.json"
    sheet.write_text(json.dumps(TRAINING_SHEET))
    monkeypatch.setattr(plan, "LAPTOP_TRAINING_SHEET", sheet)
    monkeypatch.setenv("LABKIT_RUNS", str(tmp_path))          # no `make bench-training` of this machine
    monkeypatch.setattr(plan, "_measured_laptop", lambda: {})
    small = {"cores": 2, "total_ram_bytes": int(8 * GB), "available_ram_bytes": int(8 * GB),
             "memory_limited_by": "RAM", "free_disk_bytes": int(100 * GB)}
    monkeypatch.setattr(sizing, "machine", lambda: small)
    rows = plan.lab_plan("laptop")
    optional = [r for r in rows if r["what"].startswith(plan.OPTIONAL) and r["lab"] == "03"]
    assert len(optional) == 1 and optional[0]["minutes"] == 57.2   # 41 + cached AWQ
    assert optional[0]["peak_ram_gb"] == 11.6 and optional[0]["fits_here"] == "no"
    assert "AWQ 16 min, LoRA fine-tune 8 min, ONNX export with adapter 6 min" in optional[0]["basis"]
    rows = [r for r in rows if r["what"].startswith(plan.OPTIONAL) or r["lab"] != "02"]   # the rest fits 8 GB
    rows = [dict(r, fits_here="yes") if not r["what"].startswith(plan.OPTIONAL) else r for r in rows]
    plan.refuse_unless_fits(rows, "laptop")            # a choice the default run does not make: no refusal
    line = plan.full_size_training_lines(TRAINING_SHEET["training"]["recipe"])
    assert "AWQ 16 min (10.9 GB), LoRA fine-tune 8 min (11.6 GB)" in line and "30 min in all" in line
    assert "another recipe" not in line
    assert "another recipe: finetune_steps=100" in plan.full_size_training_lines({**TRAINING_SHEET["training"]
                                                                                 ["recipe"], "finetune_steps": 50})
    assert "(30 min measured" in plan.training_model("laptop", "microsoft/Phi-3.5-mini-instruct", 128, 600)[1]
    table = plan.training_sheet_markdown(TRAINING_SHEET)
    assert "| LoRA fine-tune | 8.4 | 11.6 GB |" in table and "| all three | 30.5 | 11.6 GB (limit 16.0 GB) |" in table
    monkeypatch.setattr(plan, "LAPTOP_TRAINING_SHEET", tmp_path / "absent.json")
    assert "not measured yet (make laptop-training" in plan.full_size_training_lines({})


def test_the_committed_training_sheet_fits_16_gb_and_the_docs_show_it():
    """`make laptop-training`'s sheet: lab 03's three steps on Phi-3.5-mini inside the limit, as docs/real-size.md
    shows them (not typed numbers)."""
    from labkit import paths

    sheet = json.loads(plan.LAPTOP_TRAINING_SHEET.read_text())
    assert sheet["profile"] == "laptop" and sheet["training"]["model"] == "microsoft/Phi-3.5-mini-instruct"
    assert 0 < sheet["memory_limit_bytes"] <= 16e9
    steps = sheet["training"]["steps"]
    assert [row["step"] for row in steps] == ["AWQ", "LoRA fine-tune", "ONNX export with adapter"]
    assert all(0 < row["peak memory GB"] * 1e9 <= sheet["memory_limit_bytes"] for row in steps)
    assert sum(row["minutes"] for row in steps) <= 45, "the issue's goal for the three steps on 2 cores"
    assert plan.training_sheet_markdown(sheet) in (paths.REPO / "docs" / "real-size.md").read_text()
    defaults = notebook_defaults("03_olive_awq_lora")
    assert defaults["full_size_recipe"] == sheet["training"]["recipe"], "the sheet measured the lab's own recipe"


# ------------------------------------------------------------------ the cpu profile's plan: `make cpu-sheet`
def test_the_cpu_plan_is_the_committed_first_run_sheet_and_the_docs_show_it():
    """Lab 00's cpu rows are `make cpu-sheet`'s measurements (an empty cache), as docs/course-results.md shows them."""
    from labkit import paths

    sheet = json.loads(plan.CPU_SHEET.read_text())
    assert (sheet["profile"], sheet["shadows"], sheet["cold_cache"]) == ("cpu", False, True)
    assert sorted(sheet["labs"]) == ["00", "01", "02", "03", "04", "05"]
    rows = {row["lab"]: row for row in plan.lab_plan("cpu")}
    for lab, measured in sheet["labs"].items():
        assert (rows[lab]["minutes"], rows[lab]["peak_ram_gb"], rows[lab]["disk_gb"]) == \
            (measured["minutes"], round(measured["peak_rss_bytes"] / GB, 1), round(measured["cache_bytes"] / GB, 1))
        assert rows[lab]["basis"].startswith("measured: make cpu-sheet (a first run, empty cache)")
    assert plan.sheet_markdown(sheet) in (paths.REPO / "docs" / "course-results.md").read_text()
    assert "disk written |" in plan.sheet_markdown(sheet)
    laptop03 = next(row for row in plan.lab_plan("laptop") if row["lab"] == "03")   # the same tiny-model training
    if not json.loads(plan.LAPTOP_SHEET.read_text()).get("cold_cache"):
        assert laptop03["minutes"] == sheet["labs"]["03"]["minutes"]
        assert laptop03["basis"].startswith("the cpu course's lab 03, measured: make cpu-sheet (a first run")


def test_a_warm_laptop_sheet_leaves_lab03_to_the_cpu_sheet(monkeypatch, tmp_path):
    """A laptop course run on a warm cache found lab 03's tiny-model outputs: its lab 03 minutes say nothing."""
    warm = {"profile": "laptop", "shadows": True, "measured_on": "2026-12-02", "cores": 2,
            "memory_limit_bytes": int(16e9), "labs": {"03": {"notebook": "03_olive_awq_lora", "minutes": 1.0,
                                                              "peak_rss_bytes": int(2.9 * GB)}}}
    monkeypatch.setattr(plan, "LAPTOP_SHEET", tmp_path / "laptop-course.json")
    plan.LAPTOP_SHEET.write_text(json.dumps(warm))
    assert "03" not in plan._measured_laptop()
    plan.LAPTOP_SHEET.write_text(json.dumps({**warm, "cold_cache": True}))
    assert plan._measured_laptop()["03"]["minutes"] == 1.0
