"""Lab 00's plan and lab 03's model choice (labkit.plan)."""

import json

import pytest

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


def test_lab00_plan_judges_each_lab_against_this_machine(monkeypatch):
    monkeypatch.setattr(plan, "_measured_laptop", lambda: {})     # the estimates, before any laptop course ran
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "memory_limited_by": "RAM", "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01"]
    assert [r["fits_here"] for r in builds] == ["yes", "yes"]         # INT4 7.7 GB, INT8 9.0 GB of 12 GB
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
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01"]
    assert [r["fits_here"] for r in builds] == ["no", "no"]
    assert all(r["fits_here"] == "yes" for r in plan.lab_plan("cpu"))
    with pytest.raises(plan.DoesNotFit) as refused:
        plan.refuse_unless_fits(plan.lab_plan("laptop"), "laptop")
    assert "lab 01 (build Phi-3.5-mini INT4) needs 7.7 GB of RAM" in str(refused.value)
    assert "6.0 GB of RAM (a cgroup limit" in str(refused.value) and "Nothing was downloaded" in str(refused.value)
    plan.refuse_unless_fits(plan.lab_plan("cpu"), "cpu")      # the tiny models: never refused


def test_the_laptop_plan_shows_the_measured_course_one_row_per_lab(monkeypatch, tmp_path):
    """With a laptop course's run sheet, each lab's minutes and peak memory are the measured ones."""
    measured = {"01": {"minutes": 21.5, "peak_rss_bytes": int(9.4 * GB), "basis": "measured: test"},
                "02": {"minutes": 18.0, "peak_rss_bytes": int(13.2 * GB), "basis": "measured: test"}}
    monkeypatch.setattr(plan, "_measured_laptop", lambda: measured)
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 2, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "memory_limited_by": "RAM", "free_disk_bytes": int(100 * GB)})
    rows = {r["lab"]: r for r in plan.lab_plan("laptop")}
    assert len(plan.lab_plan("laptop")) == 6
    assert (rows["01"]["minutes"], rows["01"]["peak_ram_gb"], rows["01"]["disk_gb"]) == (21.5, 9.4, 7.4)
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
