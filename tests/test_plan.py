"""Lab 00's plan and lab 03's model choice (labkit.plan)."""

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
    monkeypatch.setattr(sizing, "machine", lambda: {"cores": 8, "total_ram_bytes": int(16 * GB),
                                                    "available_ram_bytes": int(12 * GB),
                                                    "free_disk_bytes": int(100 * GB)})
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
                                                    "free_disk_bytes": int(100 * GB)})
    builds = [r for r in plan.lab_plan("laptop") if r["lab"] == "01"]
    assert [r["fits_here"] for r in builds] == ["no", "no"]
    assert all(r["fits_here"] == "yes" for r in plan.lab_plan("cpu"))
