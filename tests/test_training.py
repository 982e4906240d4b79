"""pdviz.training: strategies, the loss convention, fixed-model invariance, pd-gamma's NTK step, configs,
divergence, evaluation, and bit-for-bit resume for every strategy."""

import json
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from pdviz import checkpoint as ckpt
from pdviz import datasets, metrics, models, strategies, training
from pdviz.errors import CheckpointError, DivergenceError, InvalidArgumentError, UnknownNameError

STRATEGIES = sorted(training.STRATEGIES)


def tiny(**overrides):
    """A config small enough for a few iterations in well under a second."""
    values = dict(
        n_iters=6,
        hidden=16,
        n_particles=32,
        batch_size=32,
        n_init_steps=3,
        n_corrections=2,
        n_steps=2,
        buffer_size=64,
        eval_every=0,
        snapshot_every=0,
        n_eval=200,
        grid_size=32,
        field_grid_size=16,
        gamma_hidden=16,
    )
    values.update(overrides)
    return training.make_config("fast", **values)


class GaussianEnergy(nn.Module):
    """E(x) = ½ Σ ((x - m) / s)²: a model whose exact law is N(m, diag s²)."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(mean))
        self.log_std = nn.Parameter(torch.tensor(std).log())

    def forward(self, x):
        z = (x - self.mean) * torch.exp(-self.log_std)
        return 0.5 * (z * z).sum(-1)


# --- every strategy runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_runs_and_records(name):
    tr = training.Trainer(tiny(strategy=name, eval_every=3, snapshot_every=3))
    history = tr.run(progress=False)
    assert tr.iteration == 6
    assert tr.particles.shape == (32, 2) and torch.isfinite(tr.particles).all()
    c = history.curves
    assert (
        len(c["loss"]) == len(c["wall_time"]) == len(c["n_grad"]) == len(c["lr"]) == len(c["cpu_time"]) == 6
    )
    assert all(math.isfinite(v) for v in c["loss"])
    assert all(b >= a for a, b in zip(c["n_grad"], c["n_grad"][1:])) and c["n_grad"][-1] > 0
    assert history.series("log_likelihood")[0] == [0, 3, 6] and history.meta["kind"] == "training"
    assert all(math.isfinite(v) for v in history.series("log_likelihood")[1] + history.series("mmd2")[1])
    assert history.positions().shape == (3, 32, 2)
    assert (tr.log_weights is not None) == training.STRATEGIES[name].weighted
    json.dumps(history.to_dict())  # JSON-able


@pytest.mark.parametrize("name", training.STRATEGIES)
def test_gradient_evaluations_per_iteration_are_what_the_strategy_declares(name):
    """Each strategy's ``cost`` (gradient evaluations per iteration, a formula of n_steps, n_corrections and
    d) is what the trainer counts, at the paper preset: K Langevin steps from fresh positions cost K + 1."""
    cfg = training.make_config(
        "paper",
        strategy=name,
        hidden=8,
        n_particles=16,
        batch_size=16,
        n_init_steps=0,
        eval_every=0,
        snapshot_every=0,
        buffer_size=64,
        n_iters=3,
        field_grid_size=16,
        gamma_hidden=8,
    )
    curve = training.train(cfg, progress=False).history.curves["n_grad"]
    names = {"n_steps": cfg.n_steps, "n_corrections": cfg.n_corrections, "d": 2}
    declared = eval(training.STRATEGIES[name].cost, {"__builtins__": {}}, names)  # a formula of three names
    assert [b - a for a, b in zip(curve, curve[1:])] == [declared] * 2


@pytest.mark.parametrize("name", ["short-run", "pcd", "replay", "pd-alpha", "pd-beta", "pd-weighted"])
def test_strategies_are_dimension_agnostic(name):
    data = torch.randn(300, 5, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    tr = training.Trainer(tiny(strategy=name, dataset="custom", eval_every=3), data=data)
    tr.run(progress=False)
    assert tr.particles.shape == (32, 5) and torch.isfinite(tr.particles).all()
    assert tr.history.frames[-1]["log_likelihood"] is None  # grid metrics only in 2-D
    assert math.isfinite(tr.history.frames[-1]["mmd2"])


def test_conv_model_on_flattened_images():
    data = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    cfg = tiny(strategy="pd-beta", dataset="custom", model="conv", image_shape=(1, 8, 8), n_iters=2)
    tr = training.Trainer(cfg, data=data)
    tr.run(progress=False)
    assert tr.particles.shape == (32, 64) and torch.isfinite(tr.particles).all()
    with pytest.raises(InvalidArgumentError, match="2-D grid"):
        training.Trainer(tiny(strategy="pd-exact", dataset="custom"), data=data)
    with pytest.raises(InvalidArgumentError, match="d <= 10"):
        training.Trainer(tiny(strategy="pd-weighted", dataset="custom"), data=data)


# --- the loss ---------------------------------------------------------------------------------------


def test_loss_sign_convention():
    """loss = mean E(data) - mean E(negatives); one step lowers it on the same points."""
    data = datasets.sample("8gaussians", 32, seed=5)
    tr = training.Trainer(tiny(strategy="pd-alpha", dataset="custom", lr=0.0), data=data)
    neg = tr.particles.clone()
    with torch.no_grad():
        expected = float(tr.model(data).mean() - tr.model(neg).mean())
    info = tr.step()  # batch = all 32 points (drawn without replacement): its mean is the data mean
    assert info["loss"] == pytest.approx(expected, abs=1e-5)
    assert training.contrastive_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 10.0])).item() == -3.0
    w = torch.tensor([0.25, 0.75])
    assert training.contrastive_loss(torch.tensor([1.0]), torch.tensor([0.0, 4.0]), w).item() == -2.0

    tr = training.Trainer(tiny(strategy="pd-alpha", dataset="custom", lr=1e-3, lr_warmup=0), data=data)
    neg = tr.particles.clone()
    with torch.no_grad():
        before = float(tr.model(data).mean() - tr.model(neg).mean())
    tr.step()
    with torch.no_grad():
        after = float(tr.model(data).mean() - tr.model(neg).mean())
    assert after < before


def test_learning_rate_schedule():
    cfg = training.make_config("fast", lr=1e-3, lr_warmup=10, n_iters=110, lr_schedule="cosine", lr_final=0.1)
    lrs = [training.learning_rate(cfg, t) for t in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way through the cosine
    assert lrs[110] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)
    assert all(b <= a + 1e-15 for a, b in zip(lrs[9:], lrs[10:]))
    paper = training.make_config("paper")
    assert {training.learning_rate(paper, t) for t in (0, 500, 9999)} == {1e-4}


# --- a fixed model keeps its particles distributed as the model ------------------------------------------


@pytest.mark.parametrize("name", ["pcd", "pd-alpha", "pd-beta", "pd-weighted", "pd-exact"])
def test_fixed_model_particles_stay_distributed_as_model(name):
    mean, std = torch.tensor([1.0, -0.5]), torch.tensor([0.7, 1.3])
    gen = torch.Generator().manual_seed(11)
    data = mean + std * torch.randn(4000, 2, generator=gen)  # the base fitted to it starts near the model
    n = 2000
    cfg = tiny(
        strategy=name,
        dataset="custom",
        lr=0.0,
        n_particles=n,
        batch_size=64,
        n_init_steps=200,
        n_steps=5,
        n_corrections=5,
        n_iters=20,
        seed=3,
    )
    tr = training.Trainer(cfg, data=data, model=GaussianEnergy(mean.tolist(), std.tolist()))
    tr.run(progress=False)
    x = tr.particles.double()
    if tr.log_weights is not None:
        w = torch.softmax(tr.log_weights.double(), 0)
        m_hat = w @ x
        v_hat = w @ (x - m_hat) ** 2
        n_eff = 1.0 / float((w * w).sum())
    else:
        m_hat, v_hat, n_eff = x.mean(0), x.var(0), n
    # ULA with ε = 1e-2 inflates the variance by 1/(1 - ε/(4 s²)) < 1.006: far below 5 standard errors
    se_mean = std.double() / math.sqrt(n_eff)
    se_var = std.double() ** 2 * math.sqrt(2.0 / (n_eff - 1))
    assert ((m_hat - mean.double()).abs() < 5 * se_mean).all(), (m_hat, mean)
    assert ((v_hat - std.double() ** 2).abs() < 5 * se_var + 0.006 * std.double() ** 2).all(), (v_hat, std**2)


@pytest.mark.parametrize("name", ["pcd", "replay", "pd-alpha", "pd-beta", "pd-weighted"])
def test_learning_a_gaussian_recovers_the_maximum_likelihood_fit(name):
    """A Gaussian model trained on Gaussian data must end at the data's mean and std (the MLE).

    The model starts at N(0, I), far from N((1.5, -1), diag(0.5², 2²)), so this checks the loss sign, the
    update, and that the negatives keep following the moving model. Tolerances: a tenth of a standard
    deviation for the mean, 10 % for the std (the parameters average the noise of ~400 decaying steps
    with 500 particles; measured errors are about half of that). The replay buffer runs the true Langevin
    chain here (noise sqrt(ε)); with the paper's cooler noise 0.1 at ε = 0.1 it would sample at
    temperature σ²/ε = 0.1 and learn a std about sqrt(10) times too wide.
    """
    gen = torch.Generator().manual_seed(0)
    m, s = torch.tensor([1.5, -1.0]), torch.tensor([0.5, 2.0])
    data = m + s * torch.randn(4000, 2, generator=gen)
    cfg = tiny(
        strategy=name,
        dataset="custom",
        lr=0.02,
        n_iters=400,
        lr_warmup=0,
        lr_final=0.01,
        n_particles=500,
        batch_size=500,
        n_init_steps=300,
        n_steps=20,
        n_corrections=3,
        step_size=0.05,
        replay_step_size=0.05,
        replay_noise_scale=None,
        buffer_size=2000,
        ema=0.0,
    )
    tr = training.Trainer(cfg, data=data, model=GaussianEnergy([0.0, 0.0], [1.0, 1.0]))
    tr.run(progress=False)
    mle_mean, mle_std = data.mean(0), data.std(0)
    learned_mean, learned_std = tr.model.mean.detach(), tr.model.log_std.detach().exp()
    assert ((learned_mean - mle_mean).abs() < 0.1 * mle_std).all(), (learned_mean, mle_mean)
    assert ((learned_std / mle_std - 1).abs() < 0.1).all(), (learned_std, mle_std)


# --- pd-gamma ----------------------------------------------------------------------------------------


def test_gamma_energy_change_matches_explicit_ntk():
    torch.manual_seed(0)  # only the test's own tensors; the library never reads the global RNG
    net = models.mlp(2, 8, 2, "leaky_relu").double()
    gen = torch.Generator().manual_seed(2)
    params = {k: v.double() for k, v in strategies.fresh_parameters(net, gen).items()}
    data, neg, points = torch.randn(5, 2).double(), torch.randn(4, 2).double(), torch.randn(6, 2).double()
    weights = torch.softmax(torch.randn(4).double(), 0)
    lr = 0.3

    def jac(x):  # explicit per-point Jacobian ∇θ E(x), [n, P]
        rows = []
        for xi in x:
            leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
            e = functional_call(net, leaves, (xi[None],)).sum()
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(e, list(leaves.values()))]))
        return torch.stack(rows)

    for w in (None, weights):
        g = jac(data).mean(0) - (jac(neg).mean(0) if w is None else w @ jac(neg))
        expected = -lr * jac(points) @ g  # ΔE(y) = -lr <∇θE(y), g>
        got = strategies.gamma_energy_change(net, params, data, neg, points, lr, w)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_gamma_trainer_step_applies_the_ntk_change():
    tr = training.Trainer(tiny(strategy="pd-gamma", n_iters=3))
    tr.run(2, progress=False)
    data_state = tr.data_generator.get_state()
    gen_state = tr.generator.get_state()
    before = tr.model.values.clone()
    neg = tr.particles.clone()
    tr.step()
    # replay the same draws: the data batch, then the fresh network
    batch = datasets.sample("8gaussians", 32, generator=torch.Generator().set_state(data_state))
    params = strategies.fresh_parameters(
        strategies.kernel_net(tr.config), torch.Generator().set_state(gen_state)
    )
    expected = strategies.gamma_energy_change(
        strategies.kernel_net(tr.config), params, batch, neg, tr.field_grid.points, tr.config.gamma_lr
    )
    torch.testing.assert_close(tr.model.values - before, expected.reshape(16, 16))
    assert float((tr.model.values - before).abs().max()) > 0


def test_fresh_parameters_follow_default_init():
    net = nn.Sequential(nn.Linear(4, 50), nn.ReLU(), nn.Linear(50, 1))
    p = strategies.fresh_parameters(net, torch.Generator().manual_seed(0))
    assert set(p) == {k for k, _ in net.named_parameters()}
    assert float(p["0.weight"].abs().max()) <= 0.5 and float(p["2.weight"].abs().max()) <= 1 / math.sqrt(50)
    # U(-b, b) has variance b²/3
    assert float(p["0.weight"].var()) == pytest.approx(0.25 / 3, rel=0.25)
    q = strategies.fresh_parameters(net, torch.Generator().manual_seed(0))
    assert all(torch.equal(p[k], q[k]) for k in p)


# --- configuration --------------------------------------------------------------------------------------


def test_paper_preset_is_method_md():
    c = training.make_config("paper")
    assert (c.hidden, c.depth, c.activation) == (300, 2, "swish")
    assert (c.lr, tuple(c.betas), c.batch_size, c.n_particles, c.n_iters) == (
        1e-4,
        (0.0, 0.999),
        1000,
        1000,
        10_000,
    )
    assert c.n_init_steps == 1000 and (c.n_steps, c.step_size, c.noise_scale) == (20, 1e-2, None)
    assert (c.buffer_size, c.reinit_frac, c.replay_step_size, c.replay_noise_scale) == (10_000, 0.1, 0.1, 0.1)
    assert (c.pd_step, c.n_corrections, c.gamma_activation, c.ema, c.lr_warmup) == (
        1.0,
        10,
        "leaky_relu",
        0.0,
        0,
    )
    assert training.make_config("fast") == training.TrainConfig()


@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        ({"lr": -1e-3}, InvalidArgumentError, r"lr must be a number in \[0, 1e\+06\], got -0.001"),
        ({"n_particles": 0}, InvalidArgumentError, r"n_particles must be an integer in \[1, 1e\+06\], got 0"),
        ({"batch_size": 2.5}, InvalidArgumentError, r"batch_size must be an integer"),
        ({"seed": 2**63}, InvalidArgumentError, r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
        ({"ema": 1.0}, InvalidArgumentError, r"ema must be a number in \[0, 1\)"),
        ({"noise_scale": float("nan")}, InvalidArgumentError, r"noise_scale must be a number"),
        ({"dequantize": 1}, InvalidArgumentError, r"dequantize must be True or False"),
        ({"betas": (1.0, 0.5)}, InvalidArgumentError, r"betas must be a pair"),
        ({"channels": (4, 0, 4)}, InvalidArgumentError, r"channels must be"),
        (
            {"strategy": "replay", "buffer_size": 10, "n_particles": 20},
            InvalidArgumentError,
            r"buffer_size must be >= n_particles",
        ),
        ({"grid_low": 1.0, "grid_high": 0.0}, InvalidArgumentError, r"grid_low must be < grid_high"),
        ({"lrr": 1e-3}, UnknownNameError, r"unknown config key 'lrr'; valid keys: .*\blr\b"),
        ({"strategy": "cd"}, UnknownNameError, r"valid names: .*pcd, pd-alpha"),
        ({"dataset": "swirl"}, UnknownNameError, r"8gaussians"),
    ],
)
def test_config_validation(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        training.make_config("fast", **overrides)
    with pytest.raises(UnknownNameError, match="valid names: digits, fast, mnist, paper"):
        training.make_config("slow")
    with pytest.raises(InvalidArgumentError, match="data must be a float tensor"):
        training.Trainer(tiny(), data=torch.zeros(5))


# --- divergence -----------------------------------------------------------------------------------------


def test_huge_lr_raises_divergence_with_iteration():
    tr = training.Trainer(tiny(strategy="pd-alpha", lr=1e3, lr_warmup=0, n_iters=200))
    with pytest.raises(DivergenceError, match="lower lr") as err:
        tr.run(progress=False)
    assert err.value.iteration is not None and 0 <= err.value.iteration < 200
    assert "iteration" in str(err.value)


def test_huge_step_size_raises_divergence():
    tr = training.Trainer(tiny(strategy="pcd", n_init_steps=0, n_iters=50))
    tr.config.step_size = 1e4  # a run whose chains explode (the dataclass is mutable; validation passed)
    with pytest.raises(DivergenceError, match="step_size") as err:
        tr.run(progress=False)
    assert err.value.iteration is not None


# --- evaluation ------------------------------------------------------------------------------------------


def test_evaluation_known_answer():
    """A frozen Gaussian model: held-out log-likelihood is the Gaussian's, also via metrics.log_likelihood."""
    mean, std = [0.3, -0.2], [0.8, 1.2]  # mass outside the [-5, 5]² grid < 1e-4
    tr = training.Trainer(
        tiny(lr=0.0, eval_every=1, n_eval=4000, grid_size=200), model=GaussianEnergy(mean, std)
    )
    record = tr.history.frames[0]
    x = tr._eval.double()
    m, s = torch.tensor(mean).double(), torch.tensor(std).double()
    exact = float((-0.5 * ((x - m) / s) ** 2 - s.log() - 0.5 * math.log(2 * math.pi)).sum(1).mean())
    assert record["log_likelihood"] == pytest.approx(exact, abs=2e-3)  # midpoint-rule error ~h²/24 per unit
    assert record["log_likelihood"] == pytest.approx(
        metrics.log_likelihood(tr.energy_fn, tr._eval, tr.grid), abs=1e-9
    )
    assert record["entropy_bound"] == pytest.approx(-datasets.ENTROPY["8gaussians"])
    assert 0 <= record["mode_weight_spread"] <= 1 and 0 <= record["model_mode_weight_spread"] <= 1


def test_ema_is_the_evaluation_model():
    tr = training.Trainer(tiny(ema=0.9))
    tr.run(progress=False)
    assert tr.energy_fn is tr.ema_model and tr.ema_model is not tr.model
    diff = [
        float((a - b).detach().abs().max()) for a, b in zip(tr.ema_model.parameters(), tr.model.parameters())
    ]
    assert max(diff) > 0
    assert training.Trainer(tiny(ema=0.0)).energy_fn is not None


def test_time_budget_and_callback_stop():
    tr = training.Trainer(tiny(n_iters=1000, time_budget=0.001))  # the smallest budget: 1 ms
    tr.run(progress=False)
    assert tr.iteration <= 1  # checked before each iteration, so at most the one that crossed it
    tr = training.Trainer(tiny(n_iters=1000))
    tr.run(progress=False, callback=lambda t, info: t.iteration < 4)
    assert tr.iteration == 4
    assert training.train(tiny(n_iters=2), progress=False).iteration == 2


# --- checkpoints: bit-for-bit resume ---------------------------------------------------------------------


def _assert_same_run(a, b):
    assert a.iteration == b.iteration
    assert torch.equal(a.particles, b.particles)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    if a.ema_model is not None:
        assert all(torch.equal(p, q) for p, q in zip(a.ema_model.parameters(), b.ema_model.parameters()))
    if a.log_weights is not None:
        assert torch.equal(a.log_weights, b.log_weights)
    assert a.history.curves["loss"] == b.history.curves["loss"]
    assert a.history.curves["n_grad"] == b.history.curves["n_grad"]
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


@pytest.mark.parametrize("name", STRATEGIES)
def test_resume_is_bit_for_bit(name, tmp_path):
    cfg = tiny(strategy=name, eval_every=2, snapshot_every=2, ema=0.9)
    full = training.Trainer(cfg)
    full.run(6, progress=False)

    first = training.Trainer(cfg)
    first.run(3, progress=False)
    first.save(tmp_path / "ck.pt")
    resumed = training.Trainer.load(tmp_path / "ck.pt")
    resumed.run(3, progress=False)
    _assert_same_run(full, resumed)
    assert full.history.series("log_likelihood") == resumed.history.series("log_likelihood")

    again = training.Trainer(cfg).resume(tmp_path / "ck.pt")  # into an existing trainer
    again.run(3, progress=False)
    _assert_same_run(full, again)


def test_periodic_checkpoints_in_run(tmp_path):
    path = tmp_path / "run.pt"
    tr = training.Trainer(tiny(n_iters=7, checkpoint_path=str(path), checkpoint_every=3))
    tr.run(progress=False)
    assert ckpt.load_checkpoint(path)["iteration"] == 7  # the final state is written at the end
    assert training.Trainer.load(path).iteration == 7


def test_resume_refuses_mismatches(tmp_path):
    path = tmp_path / "ck.pt"
    tr = training.Trainer(tiny())
    tr.run(2, progress=False)
    tr.save(path)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.001 vs expected 0.002"):
        training.Trainer(tiny(lr=2e-3)).resume(path)
    training.Trainer(tiny(n_iters=9)).resume(path)  # run-length and measurement keys may differ
    assert training.Trainer.load(path, n_eval=50, eval_every=1).iteration == 2
    with pytest.raises(InvalidArgumentError, match="cannot change hidden"):
        training.Trainer.load(path, hidden=32)
    with pytest.raises(CheckpointError, match="other data"):
        training.Trainer.load(path, data=torch.randn(100, 2))

    raw = torch.load(path, weights_only=True)  # a hand-edited file: a tensor of the wrong shape
    good = raw["model"]["net.0.weight"]
    raw["model"]["net.0.weight"] = torch.zeros(17, 2)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"net.0.weight.*\[17, 2\].*\[16, 2\]"):
        training.Trainer.load(path)
    raw["model"]["net.0.weight"] = good
    raw["state"]["position"] = torch.zeros(5, 2)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"state.position has shape \[5, 2\], expected \[32, 2\]"):
        training.Trainer(tiny()).resume(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read"):
        training.Trainer.load(path)
