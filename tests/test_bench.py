"""The benchmarks: tiny end-to-end runs, the toy-suite resume, the naive loop against the clean one,
and the shipped paper-budget files."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from pdviz import bench, flows, training
from pdviz.models import EBM

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("speed_parity", ROOT / "benchmarks" / "speed_parity.py")
speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speed)


def _tiny(seed=0):
    return EBM(hidden=16, depth=2, base_mean=[0.3, -0.2], base_std=[1.5, 0.8], seed=seed)


def test_naive_energy_and_fields_equal_the_library():
    model, new = _tiny(), _tiny()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    x = 2 * torch.randn(50, 2, generator=gen)
    torch.testing.assert_close(speed.NaiveEBM(model)(x), model(x), rtol=1e-5, atol=1e-5)
    old_p = {k: v.detach() for k, v in model.named_parameters()}
    new_p = {k: v.detach() for k, v in new.named_parameters()}
    clean = flows.pd_beta_field(model, old_p, new_p, x)
    assert clean.abs().max() > 1e-4  # a non-trivial field, else the comparison proves nothing
    naive = speed.naive_pd_beta_field(speed.NaiveEBM(model), speed.NaiveEBM(new), x)
    torch.testing.assert_close(naive, clean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        speed.naive_pd_alpha_field(model, new, x), flows.pd_field(model, new, x), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("strategy", speed.STRATEGIES)
def test_naive_and_clean_loops_do_the_same_work(strategy):
    row = speed.pair(strategy, 2, "fast", hidden=8, n_particles=16, batch_size=16)
    assert row["grad_evals_per_iter"]["clean"] == row["grad_evals_per_iter"]["naive"] > 0
    assert (
        row["clean_ms_cpu_median"] > 0 and row["clean_over_naive_ci95"][0] <= row["clean_over_naive_median"]
    )


def test_tracking_tiny_end_to_end(tmp_path):
    result = bench.run_tracking(quick=True, methods=("langevin", "exact"), progress=False)
    loaded = json.loads(bench.write_json(tmp_path / "t.json", result).read_text())
    assert len(loaded["rows"]) == 2 * len(bench.TRACK_FAMILIES)
    by = {(r["family"], r["method"]): r["mean_excess_kl"] for r in loaded["rows"]}
    # the exact flow transports a translating Gaussian to within sampling noise of the floor
    assert abs(by[("translating_gaussian", "exact")]) < 0.05


def test_toy_suite_runs_resumes_and_reads_old_runs(tmp_path):
    specs = [{**s, "n_iters": 4, "cpu_budget": None} for s in bench.quick_suite(["8gaussians"])]
    specs = [s for s in specs if s["strategy"] == "pcd"]
    specs += [{**specs[0], "seed": 1}]
    first = bench.run_toy_suite(tmp_path, specs[:1], progress=False)
    assert first["n_runs"] == 1
    done = tmp_path / bench.run_name(specs[0])
    record = json.loads(done.read_text())
    assert record["status"] == "done" and record["iterations"] == 4
    stamp = done.stat().st_mtime_ns
    second = bench.run_toy_suite(tmp_path, specs, progress=False)
    assert second["n_runs"] == 2 and done.stat().st_mtime_ns == stamp  # the finished run was not redone
    assert "| 8gaussians | pcd | 2 |" in bench.toy_markdown(second)
    shipped = bench.aggregate_toy(ROOT / "benchmarks" / "toy_runs")  # what notebook 06 reads
    assert shipped["n_runs"] == 287  # 276 reduced-budget runs and 11 paper-budget runs


def test_shipped_paper_runs_load_weights_only():
    runs = bench.load_paper_runs(ROOT / "benchmarks" / "paper_runs" / "final")
    assert {"pcd", "pd-gamma"} <= set(runs)
    for name, run in runs.items():
        assert run["particles"].shape == (1000, 2)
        e = run["energy_fn"](run["particles"][:10])
        assert e.shape == (10,) and torch.isfinite(e).all(), name


def test_shipped_digits_models_load_weights_only_and_train_further():
    shipped = ROOT / "benchmarks" / "digits_models"
    summary = json.loads((shipped / "summary.json").read_text())
    for strategy in ("pcd", "pd-beta"):
        torch.load(shipped / f"{strategy}.pt", weights_only=True)  # data only, no pickled code
        trainer = training.Trainer.load(shipped / f"{strategy}.pt")
        assert trainer.iteration == summary[strategy]["shipped_iteration"]
        assert max(summary[strategy]["validation_nats_per_image"].values()) == pytest.approx(
            summary[strategy]["validation_nats_per_image"][str(trainer.iteration)]
        )  # shipped at its best validation score
        assert trainer.particles.shape == (64, 64) and trainer.config.energy_reg == 1e-3
        trainer.run(2, progress=False)  # a full Trainer: it trains on
        assert trainer.iteration == summary[strategy]["shipped_iteration"] + 2
