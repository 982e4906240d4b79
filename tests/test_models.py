"""Tests of the MLP EBM with its Gaussian base and of the conv energy."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from pdviz import errors
from pdviz.models import ACTIVATIONS, EBM, ConvEBM


def _zero_mlp_output(model):
    last = model.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def test_architecture_matches_the_scripts():
    model = EBM(seed=0)
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 300), (300, 300), (300, 1)]
    assert sum(isinstance(m, nn.SiLU) for m in model.net) == 2
    assert isinstance(EBM(activation="leaky_relu", seed=0).net[1], nn.LeakyReLU)
    assert EBM(activation="leaky_relu", seed=0).net[1].negative_slope == 0.2
    deep = EBM(dim=3, hidden=16, depth=4, seed=0)
    assert sum(isinstance(m, nn.Linear) for m in deep.net) == 5
    assert deep(torch.zeros(7, 3)).shape == (7,)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_runs(activation):
    out = EBM(hidden=8, activation=activation, seed=0)(torch.randn(5, 2))
    assert out.shape == (5,) and torch.isfinite(out).all()


def test_from_data_fits_base_and_zeroed_mlp_is_the_gaussian():
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(5000, 2, generator=gen) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -3.0])
    model = EBM.from_data(data, hidden=32, seed=0)
    torch.testing.assert_close(model.base_mean.detach(), data.mean(0))
    torch.testing.assert_close(model.base_std.detach(), data.std(0))
    _zero_mlp_output(model)
    x = torch.randn(100, 2, generator=gen)
    expected = -torch.distributions.Normal(data.mean(0), data.std(0)).log_prob(x).sum(1)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model.base_energy(x), expected)
    # with the MLP zeroed, exp(-E) is a normalised density: check on a fine grid (Riemann sum)
    xs = torch.linspace(-12, 14, 401, dtype=torch.float64)
    ys = torch.linspace(-7, 1, 401, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    with torch.no_grad():
        energy = model(pts)
    mass = torch.exp(-energy).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert float(mass) == pytest.approx(1.0, abs=1e-3)
    assert energy.dtype == torch.float64  # the input dtype is preserved


def test_base_initialisation_from_arguments():
    model = EBM(dim=3, hidden=4, base_mean=[1.0, 2.0, 3.0], base_std=0.5, seed=0)
    torch.testing.assert_close(model.base_mean.detach(), torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(model.base_std.detach(), torch.full((3,), 0.5))
    names = {name for name, _ in model.named_parameters()}
    assert {"base_mean", "base_log_std"} <= names
    assert list(model.buffers()) == []


def test_gradients_flow_to_all_parameters():
    model = EBM.from_data(torch.randn(50, 2), hidden=16, seed=1)
    x = torch.randn(20, 2)
    model(x).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_same_seed_same_weights_and_global_rng_untouched():
    before = torch.random.get_rng_state()
    a, b, c = EBM(hidden=16, seed=3), EBM(hidden=16, seed=3), EBM(hidden=16, seed=4)
    d = ConvEBM((1, 8, 8), seed=3)
    e = ConvEBM((1, 8, 8), seed=3)
    EBM(hidden=16)  # seed=None draws from OS entropy, not the global RNG
    assert torch.equal(before, torch.random.get_rng_state())
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


def test_functional_call_matches_forward_and_differentiates():
    model = EBM.from_data(torch.randn(50, 2), hidden=16, seed=2)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(10, 2)
    torch.testing.assert_close(functional_call(model, params, (x,)), model(x))
    # shifted parameters change the energy exactly as in the module
    shifted = {k: v + 0.1 for k, v in params.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    torch.testing.assert_close(functional_call(model, shifted, (x,)), model(x))
    # torch.func.grad per point (single point [d] -> scalar) agrees with autograd on the batch
    g = torch.stack([grad(lambda y: functional_call(model, shifted, (y,)))(xi) for xi in x])
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(model(xr).sum(), xr)
    torch.testing.assert_close(g, auto)


def test_x_gradient_against_finite_differences():
    model = EBM.from_data(torch.randn(50, 2), hidden=8, seed=5).double()
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: model(y), (x,))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 9, 7)])
def test_conv_ebm_shapes(shape):
    model = ConvEBM(shape, channels=(8, 8, 8), seed=0)
    d = shape[0] * shape[1] * shape[2]
    x = torch.rand(4, d)
    out = model(x)
    assert out.shape == (4,) and torch.isfinite(out).all()
    torch.testing.assert_close(model(x.reshape(4, *shape)), out)
    assert model(x[0]).shape == ()
    params = {k: v.detach() for k, v in model.named_parameters()}
    torch.testing.assert_close(functional_call(model, params, (x,)), out)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr).sum(), xr)
    assert g.shape == (4, d) and g.abs().sum() > 0
    model(xr).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_conv_ebm_default_mnist_and_two_tuple_shape():
    assert ConvEBM(seed=0)(torch.rand(2, 784)).shape == (2,)
    assert ConvEBM((8, 8), seed=0).image_shape == (1, 8, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "gelu"}, "leaky_relu, relu, softplus, swish, tanh"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": 2.5}, "hidden"),
        ({"depth": -1}, "depth"),
        ({"dim": True}, "dim"),
        ({"base_std": 0.0}, "base_std"),
        ({"base_std": [1.0, -1.0]}, "base_std"),
        ({"base_mean": [1.0, 2.0, 3.0]}, "base_mean"),
        ({"base_mean": "a"}, "base_mean"),
        ({"seed": -3}, "seed"),
    ],
)
def test_ebm_bad_arguments(kwargs, match):
    with pytest.raises(errors.InvalidArgumentError, match=match):
        EBM(**kwargs)


def test_bad_inputs_raise_pdviz_errors():
    model = EBM(hidden=4, seed=0)
    with pytest.raises(errors.InvalidArgumentError, match=r"shape \[n, 2\].*\[5, 3\]"):
        model(torch.zeros(5, 3))
    with pytest.raises(errors.InvalidArgumentError, match="floating"):
        model(torch.zeros(5, 2, dtype=torch.int64))
    with pytest.raises(errors.InvalidArgumentError, match="Tensor"):
        model([[0.0, 0.0]])
    with pytest.raises(errors.InvalidArgumentError, match="data"):
        EBM.from_data(torch.zeros(5))
    with pytest.raises(errors.InvalidArgumentError, match="at least 2"):
        EBM.from_data(torch.zeros(1, 2))
    with pytest.raises(errors.InvalidArgumentError, match="base_mean"):
        EBM.from_data(torch.zeros(4, 2), base_mean=0.0)
    conv = ConvEBM((1, 8, 8), channels=(4, 4, 4), seed=0)
    with pytest.raises(errors.InvalidArgumentError, match=r"\[n, 64\]"):
        conv(torch.zeros(3, 784))
    with pytest.raises(errors.InvalidArgumentError, match="image_shape"):
        ConvEBM((1, 2, 2))
    with pytest.raises(errors.InvalidArgumentError, match="channels"):
        ConvEBM((1, 8, 8), channels=(4, 0, 4))
    with pytest.raises(errors.UnknownNameError, match="swish"):
        ConvEBM((1, 8, 8), activation="elu")


def test_constant_data_coordinate_gives_finite_energy():
    data = torch.stack([torch.randn(100), torch.full((100,), 2.0)], 1)
    model = EBM.from_data(data, hidden=4, seed=0)
    assert math.isclose(float(model.base_std[1].detach()), 1e-3, rel_tol=1e-5)
    assert torch.isfinite(model(data)).all()


def test_conv_ebm_with_a_base_is_the_base_when_the_net_is_zero():
    data = torch.rand(200, 64, generator=torch.Generator().manual_seed(0))
    model = ConvEBM((1, 8, 8), channels=(4, 4, 4), seed=0, data=data)
    assert float(model.base_mean.detach()) == pytest.approx(float(data.mean()), abs=1e-6)
    assert float(model.base_log_std.detach().exp()) == pytest.approx(float(data.std()), rel=1e-5)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    normal = torch.distributions.Normal(model.base_mean.detach(), model.base_log_std.detach().exp())
    assert torch.allclose(model(x), -normal.log_prob(x).sum(1), atol=1e-4)
    mean, std = model.ais_base()
    assert mean.shape == std.shape == (64,)
