"""The demo job: a tiny run writes every file, with consistent numbers; bad arguments fail early."""

import json
import re

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from pdviz import demo
from pdviz.errors import InvalidArgumentError, UnknownNameError

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
    """One tiny run (one test, so that parallel workers do not repeat it): files, numbers, page, table."""
    out = tmp_path
    result = demo.run_demo(out, seconds=5.0, seed=0, progress=False, small=True)

    # every file, non-empty; images of a sensible size; the GIF has the frames the result reports
    for name in demo.OUTPUT_FILES:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in ("samplers.png", "densities.png", "curves.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 200 and im.size[1] > 100, name
    with Image.open(out / "comparison.gif") as im:
        assert im.n_frames == result["animation_frames"] >= 2
    assert plt.get_fignums() == []

    # metrics.json: the returned dict, with every key and plausible values
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == result
    assert set(saved["methods"]) == set(demo.METHODS)
    for method, rec in saved["methods"].items():
        assert METHOD_KEYS <= set(rec), method
        assert rec["iterations"] >= 1 and rec["n_grad"] > 0, method
        assert rec["log_likelihood"] is not None and rec["log_likelihood"] < 0, method
        # nobody beats the data-entropy bound by more than estimation noise
        assert rec["log_likelihood"] <= saved["entropy_bound"] + 0.2, method
        assert 0.0 <= rec["mode_weight_spread"] <= 1.0, method
    assert saved["entropy_bound"] == pytest.approx(-2.84, abs=0.05)
    assert saved["mode_weight_spread_iid"] == pytest.approx(0.058, abs=0.01)  # 300 particles, 8 modes
    s = saved["samplers"]
    assert set(s) == {"exact", "ula", "mala"}
    assert 0.0 < s["mala"]["acceptance_rate"] <= 1.0 and s["ula"]["acceptance_rate"] is None
    # the large step makes ULA's bias visible: its KL is well above exact samples' and MALA's
    assert s["ula"]["kl"] > s["exact"]["kl"] + 0.05 and s["ula"]["kl"] > s["mala"]["kl"] + 0.05

    # index.html: relative links to every picture, the table, this run's numbers
    page = (out / "index.html").read_text()
    links = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert {"samplers.png", "comparison.gif", "densities.png", "curves.png", "metrics.json"} <= links
    assert all(not link.startswith(("/", "http")) for link in links)
    assert "<table>" in page and "PCD" in page and "PD-β" in page
    assert f"{result['methods']['pcd']['mode_weight_spread']:.3f}" in page

    # the printed table
    table = demo.format_table(result)
    assert table.splitlines()[0].startswith("method")
    assert "PCD" in table and "PD-β" in table and "data-entropy bound" in table


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dataset": "swirl"}, UnknownNameError, "valid names"),
        ({"seconds": 0}, InvalidArgumentError, "seconds"),
        ({"seconds": float("nan")}, InvalidArgumentError, "seconds"),
        ({"seed": -1}, InvalidArgumentError, "seed"),
    ],
)
def test_bad_arguments_fail_before_work(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        demo.run_demo(tmp_path / "x", progress=False, small=True, **kwargs)
    assert not (tmp_path / "x").exists()


def test_out_dir_must_be_a_directory(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        demo.run_demo(f, progress=False, small=True)


def test_demo_on_another_dataset(tmp_path):
    """rings: its own exact energy and sampler step; no mode centres, so the spreads are reported as None."""
    result = demo.run_demo(tmp_path, dataset="rings", seconds=2.0, progress=False, small=True)
    assert (
        result["sampler_energy"] == "rings"
        and result["sampler_step_size"] == demo.SAMPLER_STEP_SIZES["rings"]
    )
    assert result["samplers"]["ula"]["kl"] > result["samplers"]["mala"]["kl"]
    for rec in result["methods"].values():
        assert rec["mode_weight_spread"] is None and rec["log_likelihood"] is not None
    assert result["mode_weight_spread_iid"] is None
    assert all((tmp_path / name).is_file() for name in demo.OUTPUT_FILES)
