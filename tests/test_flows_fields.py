"""Known-answer tests of the flow fields (docs/method.md §3): PD-alpha, PD-beta, the exact grid field, (C)."""

import math

import pytest
import torch
from torch.func import functional_call

from pdviz import energies, flows, models
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid

F64 = torch.float64


def grid64(size, low=-5.0, high=5.0):
    return Grid(low, high, size, dtype=F64)


def translating(m):
    m = torch.as_tensor(m, dtype=F64)
    return lambda x: 0.5 * (x - m).square().sum(1)


def scaling(sigma):
    return lambda x: x.square().sum(1) / (2 * sigma**2)


def normal(n, gen, scale=1.0, shift=(0.0, 0.0)):
    return torch.randn(n, 2, generator=gen, dtype=F64) * scale + torch.tensor(shift, dtype=F64)


# --- translating Gaussian: PD and the exact field both equal m(t + dt) - m(t) -----------------------


def test_pd_field_translating_gaussian_is_exact(gen):
    m0, m1 = torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([0.38, -0.17], dtype=F64)
    x = normal(300, gen, scale=2.0)
    v = flows.pd_field(translating(m0), translating(m1), x)
    assert v.shape == (300, 2) and v.dtype == F64
    torch.testing.assert_close(v, (m1 - m0).expand(300, 2), atol=1e-12, rtol=0)


def test_exact_field_translating_gaussian_to_grid_accuracy(gen):
    m0, dm = torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([0.05, 0.02], dtype=F64)
    old, new = translating(m0), translating(m0 + dm)
    x = normal(400, gen, shift=m0.tolist())
    bulk = (x - m0).norm(dim=1) < 2.5
    errors = {}
    for size in (64, 128):
        v, n_outside = flows.exact_field(old, new, x, grid64(size), return_outside=True)
        assert n_outside == 0
        errors[size] = float((v[bulk] - dm).norm(dim=1).max())
    # second-order finite differences: halving h divides the error by about 4
    assert errors[128] < 0.01 * float(dm.norm())
    assert errors[64] / errors[128] > 3.0


def test_exact_field_grid_matches_pointwise(gen):
    grid = grid64(64)
    old, new = translating([0.0, 0.0]), translating([0.04, -0.03])
    u, v = flows.exact_field_grid(old, new, grid)
    assert u.shape == v.shape == (64, 64) and u.dtype == F64
    centre = grid.points.to(F64).reshape(64, 64, 2)
    inner = centre.norm(dim=2) < 2.0
    assert float((u[inner] - 0.04).abs().max()) < 1e-3 and float((v[inner] + 0.03).abs().max()) < 1e-3
    pu, pv = flows.pd_field_grid(old, new, grid)
    torch.testing.assert_close(pu, torch.full_like(pu, 0.04), atol=1e-12, rtol=0)
    torch.testing.assert_close(pv, torch.full_like(pv, -0.03), atol=1e-12, rtol=0)


def test_exact_field_outside_particles_do_not_move_and_are_counted():
    grid = grid64(48, -3.0, 3.0)
    x = torch.tensor([[0.0, 0.0], [3.5, 0.0], [0.0, -9.0], [2.9, 2.9]], dtype=F64)
    v, n_outside = flows.exact_field(translating([0, 0]), translating([0.1, 0]), x, grid, return_outside=True)
    assert n_outside == 2
    assert torch.all(v[1:3] == 0) and float(v[0, 0]) == pytest.approx(0.1, rel=0.01)


# --- scaling Gaussian: exact = (σ'/σ) x dt, PD = 2σ' x / σ³ dt ------------------------------------


def test_scaling_gaussian_fields(gen):
    sigma, dsigma = 0.9, 1e-3  # σ(t) and σ' dt for one small step
    old, new = scaling(sigma), scaling(sigma + dsigma)
    x = normal(400, gen, scale=sigma)
    bulk = x.norm(dim=1) < 2.5 * sigma
    exact = flows.exact_field(old, new, x, grid64(128))
    target = (dsigma / sigma) * x
    rel = (exact[bulk] - target[bulk]).norm(dim=1) / target[bulk].norm(dim=1)
    assert float(rel.max()) < 0.015  # grid accuracy (h = 0.078) plus O(dt) of the finite step
    pd = flows.pd_field(old, new, x)
    # the finite difference -∇ΔE = x (1/σ² - 1/σ_new²) exactly, = 2σ'x/σ³ dt to first order
    torch.testing.assert_close(pd, x * (1 / sigma**2 - 1 / (sigma + dsigma) ** 2), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(pd, 2 * dsigma * x / sigma**3, atol=0, rtol=2e-3)
    # PD's field is not the exact one unless σ² = 2
    assert float((pd - target).norm(dim=1).max()) > 0.5 * float(target.norm(dim=1).max())
    s = math.sqrt(2.0)
    pd2 = flows.pd_field(scaling(s), scaling(s + dsigma), x)
    torch.testing.assert_close(pd2, (dsigma / s) * x, atol=0, rtol=2e-3)


# --- PD-beta: three exact methods agree, and alpha -> s · beta as s -> 0 ----------------------------


def _perturbed(model, gen, scale):
    old = {k: v.detach().clone() for k, v in model.named_parameters()}
    delta = {k: scale * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in old.items()}
    return old, delta


@pytest.mark.parametrize(
    "make, dim",
    [
        (lambda: models.EBM(hidden=32, seed=0).double(), 2),
        (lambda: models.ConvEBM(image_shape=(1, 8, 8), channels=(4, 8, 8), seed=0).double(), 64),
        (lambda: models.ConvEBM(image_shape=(1, 28, 28), channels=(4, 8, 8), seed=0).double(), 784),
    ],
    ids=["mlp", "conv8", "conv28"],
)
def test_pd_beta_methods_agree(make, dim, gen):
    model = make()
    old, delta = _perturbed(model, gen, 0.01)
    new = {k: old[k] + delta[k] for k in old}
    x = torch.randn(6, dim, generator=gen, dtype=F64)
    fields = {m: flows.pd_beta_field(model, old, new, x, method=m) for m in flows.BETA_METHODS}
    ref = fields["double_backward"]
    assert ref.shape == (6, dim) and float(ref.abs().max()) > 0
    for name, field in fields.items():
        torch.testing.assert_close(field, ref, atol=1e-12 * float(ref.abs().max()), rtol=1e-9, msg=name)
    assert torch.equal(flows.pd_beta_field(model, old, new, x), ref)  # double backward by default, no timing
    # the move is the field times the step, on the same exact JVP
    change = flows.Change(None, None, model=model, params_old=old, params_new=new)
    torch.testing.assert_close(flows.beta_move(x, change, 0.5).detach(), x + 0.5 * ref)


def test_pd_alpha_approaches_beta_to_second_order(gen):
    model = models.EBM(hidden=32, seed=1).double()
    old, delta = _perturbed(model, gen, 0.05)
    x = torch.randn(200, 2, generator=gen, dtype=F64)
    beta = flows.pd_beta_field(model, old, {k: old[k] + delta[k] for k in old}, x, method="double_backward")
    energy_old = lambda z: functional_call(model, old, (z,))  # noqa: E731
    errs = []
    for s in (1e-1, 1e-2):
        new = {k: old[k] + s * delta[k] for k in old}
        alpha = flows.pd_field(energy_old, lambda z, p=new: functional_call(model, p, (z,)), x)
        errs.append(float((alpha - s * beta).abs().max()))
    # O(s²): ten times smaller s, about a hundred times smaller error (a first-order error would give 10)
    assert 50 < errs[0] / errs[1] < 200


# --- the continuity equation (C), grid-free ------------------------------------------------------


def test_continuity_residual_gaussian_families(gen):
    x = normal(300, gen, scale=1.2)
    # translating: the exact field m' has zero residual
    m0, m_dot = torch.tensor([0.2, 0.1], dtype=F64), torch.tensor([1.0, -0.5], dtype=F64)
    res = flows.continuity_residual(
        lambda z: m_dot.expand(z.shape[0], 2) + 0 * z,
        translating(m0),
        lambda z: -((z - m0) @ m_dot),
        x,
        dt_mean=0.0,
    )
    assert float(res.abs().max()) < 1e-12
    # scaling: E = |x|²/(2σ²), ∂_t E = -σ'|x|²/σ³, E_p[∂_t E] = -2σ'/σ
    s_dot = 0.7
    for sigma in (0.8, math.sqrt(2.0)):
        energy, dt_e = scaling(sigma), (lambda z, s=sigma: -s_dot * z.square().sum(1) / s**3)
        exact = flows.continuity_residual(
            lambda z, s=sigma: (s_dot / s) * z, energy, dt_e, x, dt_mean=-2 * s_dot / sigma
        )
        assert float(exact.abs().max()) < 1e-12
        pd = flows.continuity_residual(flows.pd_velocity(dt_e), energy, dt_e, x, dt_mean=-2 * s_dot / sigma)
        r2 = x.square().sum(1)
        expected = (
            4 * s_dot / sigma**3 - 2 * s_dot * r2 / sigma**5 + s_dot * r2 / sigma**3 - 2 * s_dot / sigma
        )
        torch.testing.assert_close(pd, expected, atol=1e-10, rtol=1e-10)
        if sigma == math.sqrt(2.0):
            assert float(pd.abs().max()) < 1e-10  # PD is exact where σ² = 2
    rate = flows.log_weight_rate(lambda z: 0 * z, scaling(1.0), lambda z: z.square().sum(1), x)
    torch.testing.assert_close(rate, -x.square().sum(1))


# --- maths defects of issue 15 -------------------------------------------------------------------


class UserTranslation(energies.MovingEnergy):
    """A user's moving energy with no analytic ∂_t E: |x - m(t)|²/2, m(t) = (t, -t)."""

    def energy(self, x, t):
        t = t[:, None] if isinstance(t, torch.Tensor) and t.ndim == 1 else t
        return 0.5 * (x - torch.cat([t + 0 * x[:, :1], -t + 0 * x[:, :1]], 1)).square().sum(1)


def test_constant_fields_and_autograd_dt_give_the_known_weights(gen):
    # the exact field of a translating Gaussian is constant in x: pd_velocity of its analytic ∂_t E, the
    # exact velocity itself, and a user energy whose ∂_t E comes from autograd all have zero residual
    x = normal(200, gen, scale=1.5)
    moving = energies.get("translating_gaussian")
    dt_e = lambda z: moving.dt(z, 0.3)  # noqa: E731
    for field in (flows.pd_velocity(dt_e), lambda z: moving.exact_velocity(z, 0.3)):
        res = flows.continuity_residual(field, moving.at(0.3), dt_e, x, dt_mean=0.0)
        assert float(res.abs().max()) < 1e-12
    user = UserTranslation()
    dt_user = lambda z: user.dt(z, 0.4)  # noqa: E731
    m = torch.tensor([0.4, -0.4], dtype=F64)
    torch.testing.assert_close(dt_user(x), -((x - m) @ torch.tensor([1.0, -1.0], dtype=F64)))
    v = flows.pd_velocity(dt_user)(x)
    torch.testing.assert_close(v, torch.tensor([[1.0, -1.0]], dtype=F64).expand(200, 2))
    rate = flows.log_weight_rate(flows.pd_velocity(dt_user), user.at(0.4), dt_user, x)
    torch.testing.assert_close(rate, torch.zeros(200, dtype=F64), atol=1e-12, rtol=0)


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda e, m, p: flows.pd_field(e, e, torch.zeros(3)), InvalidArgumentError, r"shape \[n, d\]"),
        (
            lambda e, m, p: flows.pd_field(e, lambda z: z, torch.zeros(3, 2)),
            InvalidArgumentError,
            r"shape \[3\]",
        ),
        (lambda e, m, p: flows.exact_field(e, e, torch.zeros(3, 3)), InvalidArgumentError, r"shape \[n, 2\]"),
        (
            lambda e, m, p: flows.exact_field(
                e, lambda z: 1 / (z[:, 0] * 0), torch.zeros(3, 2), Grid(-1.0, 1.0, 8)
            ),
            InvalidArgumentError,
            "non-finite",
        ),
        (
            lambda e, m, p: flows.pd_beta_field(m, p, p, torch.zeros(4, 2), method="finite_difference"),
            UnknownNameError,
            "valid names: double_backward, fwd_rev, rev_fwd",
        ),
        (
            lambda e, m, p: flows.pd_beta_field(m, p, {**p, "bogus": torch.zeros(1)}, torch.zeros(4, 2)),
            InvalidArgumentError,
            "bogus",
        ),
        (
            lambda e, m, p: flows.pd_beta_field(m, p, {**p, "base_mean": torch.zeros(3)}, torch.zeros(4, 2)),
            InvalidArgumentError,
            "base_mean",
        ),
    ],
)
def test_field_bad_input(call, error, match):
    model = models.EBM(hidden=8, seed=0)
    with pytest.raises(error, match=match):
        call(translating([0, 0]), model, dict(model.named_parameters()))
