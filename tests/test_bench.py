"""The benchmarks: tiny end-to-end runs, the toy-suite resume, and the naive loop against the clean one."""

import json

import pytest
import torch

from pdviz import bench, flows, training
from pdviz.errors import UnknownNameError
from pdviz.models import EBM


def _tiny_model(seed: int = 0) -> EBM:
    return EBM(hidden=16, depth=2, base_mean=[0.3, -0.2], base_std=[1.5, 0.8], seed=seed)


def _perturbed(model: EBM, scale: float = 0.05, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: v.detach() + scale * torch.randn(v.shape, generator=gen) for k, v in model.named_parameters()}


def _copy_with(model: EBM, params: dict[str, torch.Tensor]) -> EBM:
    other = _tiny_model()
    other.load_state_dict({k: v.clone() for k, v in params.items()})
    return other


def test_naive_energy_equals_ebm():
    model = _tiny_model()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 2
    naive = bench.NaiveEBM.from_ebm(model)
    torch.testing.assert_close(naive(x), model(x), rtol=1e-5, atol=1e-5)
    # same parameters in the same order, so parameters_to_vector means the same thing in both
    assert [p.shape for p in naive.parameters()] == [p.shape for p in model.parameters()]


def test_naive_pd_beta_field_equals_clean():
    model = _tiny_model()
    old = {k: v.detach().clone() for k, v in model.named_parameters()}
    new = _perturbed(model)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(2)) * 2
    clean = flows.pd_beta_field(model, old, new, x, method="double_backward")
    naive = bench.naive_pd_beta_field(
        bench.NaiveEBM.from_ebm(model), bench.NaiveEBM.from_ebm(_copy_with(model, new)), x
    )
    assert clean.abs().max() > 1e-4  # a non-trivial field, else the comparison proves nothing
    torch.testing.assert_close(naive, clean, rtol=1e-4, atol=1e-6)


def test_naive_pd_alpha_field_equals_clean():
    model = _tiny_model()
    new_model = _copy_with(model, _perturbed(model))
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(3))
    clean = flows.pd_field(model, new_model, x)
    naive = bench.naive_pd_alpha_field(bench.NaiveEBM.from_ebm(model), bench.NaiveEBM.from_ebm(new_model), x)
    torch.testing.assert_close(naive, clean, rtol=1e-4, atol=1e-6)


def test_naive_loss_equals_contrastive_loss():
    model = _tiny_model()
    gen = torch.Generator().manual_seed(4)
    data, neg = torch.randn(40, 2, generator=gen), 2 * torch.randn(30, 2, generator=gen)
    naive = bench.naive_loss(bench.NaiveEBM.from_ebm(model), data, neg)
    clean = model(data).mean() - model(neg).mean()
    torch.testing.assert_close(naive, clean, rtol=1e-5, atol=1e-6)


def test_tracking_tiny_end_to_end(tmp_path):
    settings = {
        "families": ["translating_gaussian", "interpolation"],
        "methods": ["langevin", "pd", "exact"],
        "budgets": [3],
        "seeds": [0],
        "step_grid": [0.01, 0.05],
        "n_particles": 100,
        "n_steps": 3,
        "bins": 15,
        "grid_size": 48,
        "floor_repeats": 2,
    }
    result = bench.run_tracking(settings, progress=False)
    path = bench.write_json(tmp_path / "tracking.json", result)
    loaded = json.loads(path.read_text())
    assert {"settings", "machine", "rows", "tuning", "floors", "acceptance"} <= set(loaded)
    assert len(loaded["rows"]) == 2 * 3
    for row in loaded["rows"]:
        # every method spent exactly the stated budget per time step
        assert row["n_grad_per_step"] == [3.0]
        assert row["mean_excess"][0] is not None
    tuned = {(t["family"], t["method"]) for t in loaded["tuning"]}
    assert ("interpolation", "langevin") in tuned and ("interpolation", "pd") in tuned
    assert "| interpolation | 3 | pd |" in bench.tracking_markdown(loaded)


def _tiny_specs(n_seeds: int = 1):
    budget = {
        "name": "iters",
        "preset": "fast",
        "n_iters": 4,
        "overrides": {"hidden": 8, "n_particles": 32, "batch_size": 32, "eval_every": 2, "n_eval": 200},
    }
    return bench.toy_specs(
        datasets=["8gaussians"],
        strategies=("pcd",),
        seeds=range(n_seeds),
        extra_strategies=(),
        budgets=[budget],
    )


def test_toy_suite_runs_resumes_and_counts_missing(tmp_path):
    specs = _tiny_specs(n_seeds=2)
    first = bench.run_toy_suite(tmp_path, specs, progress=False, max_runs=1)
    assert first["ran"] == 1 and first["n_runs"] == 1 and first["n_missing"] == 1
    done = tmp_path / bench.toy_run_name(specs[0])
    record = json.loads(done.read_text())
    assert record["status"] == "done"
    assert {"ll_final", "evals", "cpu_s", "grad_evals_per_iter", "config", "machine"} <= set(record)
    assert record["iterations"] == 4
    stamp = done.stat().st_mtime_ns

    second = bench.run_toy_suite(tmp_path, specs, progress=False)
    assert second["skipped"] == 1 and second["ran"] == 1 and second["n_missing"] == 0
    assert done.stat().st_mtime_ns == stamp  # the finished run was not redone

    # a half-written file (a killed run) is not "finished" and is redone
    done.write_text('{"spec": ')
    third = bench.run_toy_suite(tmp_path, specs, progress=False)
    assert third["ran"] == 1 and third["skipped"] == 1
    table = bench.toy_markdown(third)
    assert "| 8gaussians | pcd | 2 |" in table and "0 planned runs missing" in table


def test_speed_tiny_end_to_end(tmp_path):
    common = {
        "n_iters": 2,
        "preset": "fast",
        "threads": 1,
        "overrides": {"hidden": 16, "n_particles": 64, "batch_size": 64},
    }
    # one variant in a fresh subprocess (the real path, RSS per run), one in this process (cheaper)
    result = bench.run_speed(
        variants=[{"strategy": "pd-beta", "loop": "naive", "logging": "published", **common}], progress=False
    )
    result["results"].append(
        bench.speed_worker({"strategy": "pd-beta", "loop": "clean", "logging": "none", **common})
    )
    path = bench.write_json(tmp_path / "speed.json", result)
    loaded = json.loads(path.read_text())
    assert {"machine", "results", "acceptance"} <= set(loaded)
    for r in loaded["results"]:
        assert "error" not in r, r.get("error")
        assert r["ms_per_iter_cpu"] > 0 and r["peak_rss_mb"] > 10
        # K corrections + the move (+1 refresh in pdviz): the field and corrections really ran
        assert r["grad_evals_per_iter"] >= 5
    assert "| pd-beta | naive | published |" in bench.speed_markdown(loaded)


@pytest.mark.parametrize("strategy", bench.NAIVE_STRATEGIES)
def test_naive_and_clean_loops_do_the_same_work(strategy):
    config = training.make_config(
        "fast",
        strategy=strategy,
        hidden=8,
        n_particles=16,
        batch_size=16,
        n_iters=2,
        n_init_steps=0,
        eval_every=0,
    )
    trainer = training.Trainer(config)
    loop = bench.NaiveLoop(
        config, bench.NaiveEBM.from_ebm(bench._trainer_model(trainer)), lambda n: torch.randn(n, 2)
    )
    before = bench._n_grad(trainer)
    trainer.step()
    loop.step()
    k = config.n_corrections if strategy.startswith("pd") else config.n_steps
    # the same K Langevin steps (plus the PD move), the same count of evaluations: a chain and PD-beta's
    # corrections spend exactly K (their last move needs no gradient, the model changes next); PD-alpha's
    # last correction evaluates the gradient that its next move reuses as ∇E_old
    assert loop.n_grad == k + (2 if strategy.startswith("pd") else 0)
    assert bench._n_grad(trainer) - before == loop.n_grad


def test_run_rejects_unknown_benchmark(tmp_path):
    with pytest.raises(UnknownNameError, match="tracking"):
        bench.run(tmp_path, which=("nope",))


def test_speed_pair_worker_pairs_the_loops_and_reports_a_ci():
    threads = torch.get_num_threads()
    try:
        res = bench.speed_pair_worker("pd-beta", n_pairs=6, preset="fast")
    finally:
        torch.set_num_threads(threads)
    assert res["pairs"] == 6 and res["threads"] == 1
    low, high = res["clean_over_naive_ci95"]
    assert 0 < low <= res["clean_over_naive_median"] <= high
    assert res["clean_ms_cpu_median"] > 0 and res["naive_ms_cpu_median"] > 0
    # both loops do the same work per iteration: the PD-beta move (2) and K corrections
    k = training.make_config("fast").n_corrections
    assert res["grad_evals_per_iter"] == {"clean": 2 + k, "naive": 2 + k}
