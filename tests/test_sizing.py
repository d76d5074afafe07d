"""Measured requirements and the refusals that name them (labkit.sizing)."""

import pytest

from labkit import shadow, sizing

GB = 1e9


# ------------------------------------------------------------------ requirements and refusals
def test_requirement_scales_with_parameters():
    full = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini"))
    assert full["basis"] == "measured on the full-size Phi-3.5-mini shadow"
    assert full["peak_rss_bytes"] == sizing.MEASURED_PHI35_MINI["int4"]["peak_rss_bytes"]
    half = sizing.build_requirement("int4", shadow.shadow_config("phi-3.5-mini", 16))
    assert sizing.PROCESS_OVERHEAD_BYTES < half["peak_rss_bytes"] < full["peak_rss_bytes"]
    assert "scaled to" in half["basis"]
    assert sizing.build_requirement("fp32", shadow.shadow_config("phi-3.5-mini"))["size_bytes"] > 15 * GB


def test_refusal_names_requirement_available_and_total():
    with pytest.raises(sizing.DoesNotFit, match=r"about 7\.5 GB.*4\.0 GB available of 16\.0 GB"):
        sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(4 * GB),
                          total_bytes=int(16 * GB))
    sizing.check_fits("The INT4 build", int(7.5 * GB), "measured", available_bytes=int(12 * GB),
                      total_bytes=int(16 * GB))
