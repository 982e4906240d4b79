"""Every result script of ``benchmarks/`` runs its ``--quick`` mode: the same code as the full run at tiny sizes,
writing into a temporary folder (never over a shipped result file: checked after each test), and what it
writes holds what the full run's file holds. ``lag.py`` and ``digits_models.py`` are run by test_lag.py and
test_images.py."""

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdviz import bench, datasets

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _digest() -> dict[str, str]:
    """SHA-256 of every file under benchmarks/ but the scripts: the shipped results."""
    files = (
        p
        for p in sorted(BENCH.rglob("*"))
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    )
    return {str(p.relative_to(BENCH)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(autouse=True)
def shipped_results_unchanged():
    before = _digest()
    yield
    assert _digest() == before, "a --quick run changed a shipped result file under benchmarks/"


def _run(script: str, *args, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_ais_784_quick_brackets_log_z_and_refuses_the_shipped_file(tmp_path):
    refused = _run("ais_784.py", "--quick", ok=False)
    assert refused.returncode == 2 and "give --out" in refused.stderr
    proc = _run("ais_784.py", "--quick", "--out", tmp_path / "a.json")
    result = json.loads((tmp_path / "a.json").read_text())
    (row,) = result["rows"]
    assert row["K"] == 20 and _finite(result["truth"], row["plain"], row["lower"], row["upper"])
    # forward AIS from the pilot's base is a lower bound, reverse from exact samples an upper one; the plain
    # standard-normal base is far worse than the pilot's in 784-D
    assert row["lower"] < 0 < row["upper"] and abs(row["plain"]) > 10 * abs(row["lower"])
    assert "| 20 | 0 | " in proc.stdout


def test_paper_figure_quick_trains_extracts_and_draws(tmp_path):
    runs, png = tmp_path / "runs", tmp_path / "figure.png"
    _run("paper_figure.py", "--quick", "--runs", runs, "--png", png)
    final = runs / "final"
    assert sorted(p.name for p in final.glob("*.pt")) == ["pcd-s0.pt", "pd-beta-s0.pt"]  # seed 0 only
    summary = json.loads((final / "summary.json").read_text())
    assert summary["over_seeds"]["pd-beta"]["seeds"] == 2 and summary["over_seeds"]["pcd"]["seeds"] == 1
    assert all(
        summary[r]["iteration"] == 6 and _finite(summary[r]["log_likelihood"])
        for r in ("pcd-s0", "pd-beta-s1")
    )
    evals = json.loads((final / "evals.json").read_text())
    assert set(evals) == {"pcd-s0", "pd-beta-s0", "pd-beta-s1"}
    assert all(e["iteration"] == [0, 3, 6] for e in evals.values())
    loaded = bench.load_paper_runs(final)  # what the notebook and the README's figure read
    assert set(loaded) == {"pcd", "pd-beta"} and loaded["pcd"]["particles"].shape == (100, 2)
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 500 and height > 500


def test_toy_suite_quick_runs_two_tiny_runs_and_tabulates(tmp_path):
    proc = _run("toy_suite.py", "--quick", "--runs", tmp_path / "toy")
    assert len(list((tmp_path / "toy").glob("cpu__8gaussians__*__s0.json"))) == 2
    summary = json.loads((tmp_path / "toy.json").read_text())
    rows = {r["strategy"]: r for r in summary["rows"]}
    assert set(rows) == {"pcd", "pd-beta"} and summary["n_runs"] == 2
    for r in rows.values():
        assert r["iterations_mean"] == 6 and r["n_diverged"] == 0
        assert _finite(r["ll_mean"]) and r["ll_mean"] < r["entropy_bound"]  # no model beats -H(data)
    assert "| 8gaussians | pcd | 1 |" in proc.stdout


def test_entropy_quick_estimates_every_dataset_near_its_shipped_value():
    out = _run("entropy.py", "--quick").stdout
    found = dict(re.findall(r"^(\S+)\s+(-?[0-9.]+) ± [0-9.]+", out, re.M))
    assert sorted(found) == sorted(datasets.DATASETS)
    # 2 x 3,000 samples: the k-NN estimate lands within 0.1 nats of the shipped (200,000-sample or exact) value
    assert all(abs(float(v) - datasets.ENTROPY[name]) < 0.1 for name, v in found.items()), found


def test_binder_check_quick_measures_a_tiny_notebook_without_installing(tmp_path):
    proc = _run("binder_check.py", "--quick", "--json", tmp_path / "b.json", "--md", tmp_path / "b.md")
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["install"]["quick"] == sys.prefix  # nothing built, nothing downloaded
    assert result["quick_listed"] == [p.name for p in sorted((ROOT / "notebooks").glob("0[1-8]_*.ipynb"))]
    (nb,) = result["notebooks"]
    assert nb["executed"] and nb["pass"], nb["error"]
    # the harness sees the cell's second of CPU and its 200 MB (190.7 MiB, over a bare kernel's ~60) in the kernel's tree
    assert (
        nb["peak_kernel_mb"] >= 200
        and nb["kernel_cpu_s"] >= 1.0
        and nb["peak_total_mb"] > nb["peak_kernel_mb"]
    )
    assert "| b.ipynb |" in (tmp_path / "b.md").read_text() and "pass" in proc.stdout


def test_speed_parity_quick_pairs_loops_doing_the_same_work(tmp_path):
    _run("speed_parity.py", "--quick", "--out", tmp_path / "s.json")
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["short-run", "pcd", "replay", "pd-alpha", "pd-beta"]
    for r in rows:
        assert (
            r["pairs"] == 3 and r["grad_evals_per_iter"]["clean"] == r["grad_evals_per_iter"]["naive"] > 0
        ), r
        low, high = r["clean_over_naive_ci95"]
        assert _finite(low, high) and 0 < low <= r["clean_over_naive_median"] <= high


def test_probe_inputs_quick_finds_every_probe_clear(tmp_path):
    proc = _run("probe_inputs.py", "--quick", "--out", tmp_path / "p.json")
    rows = json.loads((tmp_path / "p.json").read_text())
    classes = {c for c, *_ in rows}
    assert {"sizes", "seeds", "output paths", "error messages"} <= classes and len(rows) >= 40
    assert all(verdict == "clear" for _, _, verdict, _ in rows), [r for r in rows if r[2] != "clear"]
    assert f"{len(rows)} probes: {{'clear': {len(rows)}," in proc.stdout


def test_tracking_quick_scores_every_family_and_method(tmp_path):
    _run("tracking.py", "--quick", "--out", tmp_path / "t.json")
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    by = {(r["family"], r["method"]): r["mean_excess_kl"] for r in rows}
    assert set(by) == {(f, m) for f in bench.TRACK_FAMILIES for m in ("langevin", "alpha", "exact")}
    assert _finite(*by.values())
    assert abs(by[("translating_gaussian", "exact")]) < 0.05  # the exact flow stays at the floor


def test_widgets_bench_quick_times_both_apps(tmp_path):
    _run("widgets_bench.py", "--quick", "--out", tmp_path / "w.json")
    result = json.loads((tmp_path / "w.json").read_text())
    assert [r["target"] for r in result["rows"]] == ["scaling_gaussian", "mode_weights"]
    for r in result["rows"]:
        assert r["n_particles"] == 100
        assert all(
            _finite(t["median_ms"]) and 0 < t["median_ms"] <= t["max_ms"] for t in (r["reset"], r["redraw"])
        )


def test_images_cpu_quick_scores_known_answers_and_both_strategies(tmp_path):
    proc = _run("images_cpu.py", "--quick", "--out", tmp_path / "i.json")
    result = json.loads((tmp_path / "i.json").read_text())
    assert [r["n_steps"] for r in result["ais_gaussian"]] == [20] and _finite(
        result["ais_gaussian"][0]["error_mean"]
    )
    assert all(abs(r["error_mean"]) < 0.2 for r in result["ais_grid"]), result["ais_grid"]
    base, *trained = result["digits"]
    assert base["nats_per_image"] == pytest.approx(
        base["exact_nats_per_image"], abs=0.1
    )  # AIS of the base is exact
    assert {r["strategy"] for r in trained} == {"pd-beta", "pcd"}
    assert all(r["iterations"] > 0 and _finite(r["nats_per_image"]) for r in trained)
    assert "| strategy | runs (diverged) |" in proc.stdout


def test_gpu_images_quick_runs_on_the_cpu(tmp_path):
    proc = _run("gpu_images.py", "--quick", "--out", tmp_path / "g.json")
    result = json.loads((tmp_path / "g.json").read_text())
    assert result["device"] == "cpu" and result["quick"]
    assert [r["strategy"] for r in result["runs"]] == ["pcd", "replay", "pd-beta"]
    for r in result["runs"]:
        assert r["iterations"] > 0 and _finite(r["nats_per_image"], r["images_per_second"]), r
    assert "| pd-beta | " in proc.stdout


def test_all_strategies_quick_scores_every_strategy(tmp_path):
    """Every strategy of the registry trains 4 tiny iterations through the sweep and gets its row: the held-out
    log-likelihood below the entropy bound, the declared gradient evaluations per iteration, a lag and a
    gradient error exactly where the strategy has model samples."""
    from pdviz import training

    out = tmp_path / "all.json"
    assert _run("all_strategies.py", "--quick", ok=False).returncode == 2
    proc = _run("all_strategies.py", "--quick", "--out", out, "--md")
    result = json.loads(out.read_text())
    rows = {r["strategy"]: r for r in result["runs"]}
    assert set(rows) == set(training.STRATEGIES) and len(result["by_strategy"]) == len(rows)
    for name, r in rows.items():
        assert r["status"] == "done" and r["iterations"] == 4 and _finite(r["ll"]) and r["ll"] < r["bound"]
        assert _finite(r["lag"], r["grad_error"]) == training.STRATEGIES[name].samples, name
        assert f"| {name} |" in proc.stdout
    assert rows["ed"]["grad_evals_per_iter"] == 0 and rows["pcd"]["grad_evals_per_iter"] == 3


def test_all_strategies_landscape_quick_writes_normalised_densities(tmp_path):
    """One density per strategy on the grid, each a normalised log-density (Σ p h² = 1)."""
    import numpy as np

    from pdviz import training

    out = tmp_path / "land.npz"
    _run("all_strategies.py", "--landscape", "--quick", "--out", out)
    with np.load(out, allow_pickle=False) as z:
        keys = [k for k in z.files if "/" in k]
        assert sorted(keys) == sorted(f"8gaussians/{s}" for s in training.STRATEGIES)
        h = (float(z["high"]) - float(z["low"])) / z[keys[0]].shape[0]
        for k in keys:
            assert abs(float(np.exp(z[k].astype(np.float64)).sum() * h * h) - 1) < 0.02, k
