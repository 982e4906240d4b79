"""The demo job: a tiny run writes every file, with consistent numbers."""

import json
import re

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from pdviz import demo

METHOD_KEYS = {
    "log_likelihood",
    "mmd2",
    "mode_weight_spread",
    "model_mode_weight_spread",
    "iterations",
    "seconds",
    "cpu_seconds",
    "n_grad",
}


def test_tiny_demo_run(tmp_path):
    """One tiny run: files, numbers, page."""
    result = demo.run_demo(tmp_path, seconds=5.0, seed=0, progress=False, small=True)
    for name in demo.OUTPUT_FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("samplers.png", "densities.png", "curves.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 200 and im.size[1] > 100, name
    with Image.open(tmp_path / "comparison.gif") as im:
        assert im.n_frames == result["animation_frames"] >= 2
    plt.close("all")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["methods"]) == set(demo.METHODS)
    for method, rec in saved["methods"].items():
        assert METHOD_KEYS <= set(rec), method
        assert rec["iterations"] >= 1 and rec["n_grad"] > 0, method
        # nobody beats the data-entropy bound by more than estimation noise
        assert rec["log_likelihood"] <= saved["entropy_bound"] + 0.2, method
        assert 0.0 <= rec["mode_weight_spread"] <= 1.0, method
    assert saved["entropy_bound"] == pytest.approx(-2.832, abs=0.005)
    s = saved["samplers"]
    assert 0.0 < s["mala"]["acceptance_rate"] <= 1.0 and s["ula"]["acceptance_rate"] is None
    # the large step makes ULA's bias visible: its KL is well above exact samples' and MALA's
    assert s["ula"]["kl"] > s["exact"]["kl"] + 0.05 and s["ula"]["kl"] > s["mala"]["kl"] + 0.05
    page = (tmp_path / "index.html").read_text()
    links = set(re.findall(r'src="([^"]+)"', page))
    assert {"samplers.png", "comparison.gif", "densities.png", "curves.png"} <= links
    assert "<table" in page and "PCD" in page and "PD-β" in page
