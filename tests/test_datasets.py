"""Toy datasets: shapes, reproducibility, geometry, the 8-Gaussian entropy, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

from pdviz import datasets, energies
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid

NAMES = sorted(datasets.DATASETS)


def test_registry_has_the_eight_names():
    assert set(NAMES) == {
        "swissroll",
        "8gaussians",
        "pinwheel",
        "circles",
        "moons",
        "2spirals",
        "checkerboard",
        "rings",
    }


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_reproducible(name):
    a = datasets.sample(name, 501, seed=7)
    b = datasets.sample(name, 501, seed=7)
    c = datasets.sample(name, 501, seed=8)
    assert a.shape == (501, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # a generator gives the same stream as the seed it was seeded with, and advances
    g = torch.Generator().manual_seed(7)
    assert torch.equal(datasets.sample(name, 501, generator=g), a)
    assert not torch.equal(datasets.sample(name, 501, generator=g), a)
    assert datasets.sample(name, 1, seed=0).shape == (1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_no_global_rng_touched(name):
    state_t, state_np = torch.get_rng_state(), np.random.get_state()
    datasets.sample(name, 100, seed=1)
    assert torch.equal(torch.get_rng_state(), state_t)
    assert np.array_equal(np.random.get_state()[1], state_np[1])


def _radius(x):
    return x.double().norm(dim=1)


def test_8gaussians_geometry():
    n = 20000
    x = datasets.sample("8gaussians", n, seed=0).double()
    c = datasets.MODE_CENTRES["8gaussians"].double()
    assert c.shape == (8, 2)
    assert torch.allclose(c.norm(dim=1), torch.full((8,), 4 / 1.414, dtype=torch.float64))
    k = torch.cdist(x, c).argmin(dim=1)
    resid = x - c[k]
    s = 0.5 / 1.414
    # per-coordinate std of the noise: SE of a std estimate is s / sqrt(2 n); 5 SE
    assert abs(resid.std().item() - s) < 5 * s / math.sqrt(2 * 2 * n)
    # equal mode shares, binomial SE sqrt(p(1-p)/n)
    share = torch.bincount(k, minlength=8).double() / n
    assert (share - 1 / 8).abs().max() < 5 * math.sqrt((1 / 8) * (7 / 8) / n)
    # mean radius ≈ 2.83, plus s²/(2R) from the tangential noise (next term ~s⁴/R³ < 1e-3); 5 SE
    r = _radius(x)
    expected = 4 / 1.414 + s**2 / (2 * 4 / 1.414)
    assert abs(r.mean().item() - expected) < 5 * r.std().item() / math.sqrt(n) + 1e-3


def test_rings_geometry():
    n = 20000
    r = _radius(datasets.sample("rings", n, seed=1))
    radii = torch.tensor(datasets.RING_RADII, dtype=torch.float64)
    nearest = (r[:, None] - radii[None]).abs().argmin(dim=1)
    share = torch.bincount(nearest, minlength=4).double() / n
    assert (share - 0.25).abs().max() < 5 * math.sqrt(0.25 * 0.75 / n)
    dev = r - radii[nearest]
    assert abs(dev.std().item() - 0.08) < 0.01  # radial noise ≈ the Gaussian noise for r >> 0.08


def test_checkerboard_cells():
    x = datasets.sample("checkerboard", 5000, seed=2).double() / 2
    assert (x.abs() <= 2).all()
    # filled cells have floor(x1) + floor(x2) even
    parity = torch.remainder(torch.floor(x[:, 0]) + torch.floor(x[:, 1]), 2)
    assert (parity == 0).all()


@pytest.mark.parametrize("name", ["pinwheel", "swissroll", "moons", "2spirals", "circles"])
def test_scale_sanity(name):
    r = _radius(datasets.sample(name, 4000, seed=3))
    assert r.max() < 5.0  # everything fits the default grid box [-5, 5]²
    assert 1.0 < r.mean() < 3.5


def test_pinwheel_turns_the_way_the_scripts_do():
    # issue 24: the scripts map the features f by ``f @ R``, R = [[cos a, -sin a], [sin a, cos a]], i.e. they
    # rotate by -a; rotating by +a gave the mirror image (binned total variation 0.60 from theirs)
    rng = np.random.default_rng(0)
    n = 200_000
    f = rng.normal(size=(n, 2)) * np.array([0.3, 0.1])
    f[:, 0] += 1.0
    a = rng.integers(0, 5, n) * (2 * np.pi / 5) + 0.25 * np.exp(f[:, 0])
    rot = np.stack([np.cos(a), -np.sin(a), np.sin(a), np.cos(a)], 1).reshape(-1, 2, 2)
    theirs = 2 * np.einsum("ti,tij->tj", f, rot)
    ours = datasets.sample("pinwheel", n, seed=6).double().numpy()
    edges = np.linspace(-5, 5, 41)
    h_theirs = np.histogram2d(theirs[:, 0], theirs[:, 1], [edges, edges])[0] / n
    h_ours = np.histogram2d(ours[:, 0], ours[:, 1], [edges, edges])[0] / n
    tv = 0.5 * np.abs(h_theirs - h_ours).sum()
    assert tv < 0.03, tv  # sampling noise of two 200k samples in 1600 bins: ~0.015


def test_circles_radii():
    # make_circles: radii 1 and 0.5 (factor), noise 0.08, all × 3: radii 3 and 1.5, equal shares
    n = 20000
    r = _radius(datasets.sample("circles", n, seed=3))
    outer = r > 2.25
    assert (
        abs(outer.double().mean().item() - 0.5) < 0.01
    )  # make_circles splits n exactly, noise rarely crosses
    for mask, radius in ((outer, 3.0), (~outer, 1.5)):
        # 2-D noise of std 0.24 biases the radius up by ~0.24²/(2 radius)
        expected = radius + 0.24**2 / (2 * radius)
        assert abs(r[mask].mean().item() - expected) < 5 * 0.24 / math.sqrt(mask.sum().item()) + 2e-3


def test_moons_shift():
    x = datasets.sample("moons", 20000, seed=4).double()
    # make_moons has mean (0.5, 0.25) before scaling; times 2 and shifted by (-1, -0.2): (0, 0.3)
    assert torch.allclose(x.mean(0), torch.tensor([0.0, 0.3], dtype=torch.float64), atol=0.04)


def test_entropy_value():
    h = datasets.ENTROPY["8gaussians"]
    assert abs(h - 2.84) < 0.015
    # independent check: Monte Carlo -mean log p with the exact mixture; 5 standard errors
    x = datasets.sample("8gaussians", 40000, seed=5).double()
    s = datasets.EIGHT_STD
    d2 = torch.cdist(x, datasets.EIGHT_CENTRES).square()
    logp = torch.logsumexp(-d2 / (2 * s * s), dim=1) - math.log(8 * 2 * math.pi * s * s)
    se = logp.std().item() / math.sqrt(len(logp))
    assert abs(-logp.mean().item() - h) < 5 * se
    # the quadrature has converged: a finer grid changes nothing
    assert abs(datasets._gaussian_mixture_entropy(datasets.EIGHT_CENTRES, s, h=0.03) - h) < 1e-8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"name": "swirl"}, UnknownNameError, "8gaussians")]
    + [({"n": n}, InvalidArgumentError, "n") for n in (0, -3, 2.5, "10", True, None)]
    + [
        ({"seed": -1}, InvalidArgumentError, "seed"),
        ({"seed": 1, "generator": torch.Generator()}, InvalidArgumentError, "not both"),
        ({"generator": 3}, InvalidArgumentError, "generator"),
    ],
)
def test_bad_input(kwargs, error, match):
    kwargs = {"name": "moons", "n": 10, **kwargs}
    with pytest.raises(error, match=match):
        datasets.sample(kwargs.pop("name"), kwargs.pop("n"), **kwargs)


def test_numpy_integers_are_sizes():
    assert datasets.sample("moons", np.int64(4), seed=0).shape == (4, 2)


@pytest.mark.parametrize("name", ["rings", "8gaussians"])
def test_entropy_known_answers_by_monte_carlo(name):
    """-mean log p over exact samples estimates H; tolerance: 4 standard errors of that mean."""
    x = datasets.sample(name, 200_000, seed=5)
    g = Grid(-5, 5, 1000)
    logp = -energies.get(name)(x).double() - g.log_z(energies.get(name))
    se = float(logp.std()) / len(x) ** 0.5
    assert float(-logp.mean()) == pytest.approx(datasets.ENTROPY[name], abs=4 * se + 1e-3)


def test_entropy_of_every_dataset_against_a_fresh_knn_estimate():
    """The k-nearest-neighbour constants agree with a fresh estimate on other samples, within their error bar
    plus the estimate's own spread; checkerboard is log(area) = log 32 exactly."""
    assert datasets.ENTROPY["checkerboard"] == pytest.approx(math.log(32))
    assert set(datasets.ENTROPY) == set(datasets.DATASETS)
    for name in ("moons", "2spirals"):
        x = datasets.sample(name, 50_000, seed=11).double().numpy()
        dist = cKDTree(x).query(x, 6)[0][:, 5]
        h = digamma(len(x)) - digamma(5) + math.log(math.pi) + 2 * float(np.log(dist).mean())
        assert h == pytest.approx(datasets.ENTROPY[name], abs=datasets.ENTROPY_ERROR[name] + 0.02), name
