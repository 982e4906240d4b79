"""The eight 2-D toy datasets of ``docs/method.md`` §6, as samplers driven by an explicit ``torch.Generator``.

Every sampler has the signature ``fn(n, generator) -> Tensor[n, 2]`` (float32) and draws ``n``
independent points of its law. The geometry and scale follow the paper's scripts:

============  ==================================================================================
name          how a point is made (U = uniform, N = normal)
============  ==================================================================================
8gaussians    a centre of 8 equally spaced on a circle of radius 4, plus N(0, 0.5²), all / 1.414
swissroll     scikit-learn ``make_swiss_roll(noise=1.0)``, coordinates 0 and 2, / 5
circles       scikit-learn ``make_circles(factor=0.5, noise=0.08)``, × 3
moons         scikit-learn ``make_moons(noise=0.1)``, × 2, shifted by (-1, -0.2)
rings         radius 3, 2.25, 1.5 or 0.75 (equal probabilities), uniform angle, plus N(0, 0.08²)
pinwheel      5 arms; radial N(1, 0.3²), tangential N(0, 0.1²); rotated by -(arm angle + 0.25 e^radial); × 2
2spirals      s = √U · 3π; (-s cos s, s sin s) + U(0, 0.5)² on a random arm (or its mirror); / 3; + N(0, 0.1²)
checkerboard  x₁ ~ U(-2, 2); x₂ ~ U(0, 1) - 2 Bernoulli(½) + (⌊x₁⌋ mod 2); × 2
============  ==================================================================================

Where the scripts split ``n`` into equal groups (rings, pinwheel arms, spiral arms), the group of each point
is drawn independently here instead, so every sample is an i.i.d. sample of the density (which held-out
likelihoods and the exact ``rings`` energy of :mod:`pdviz.energies` rely on).

The scikit-learn generators take a NumPy seed; it is drawn from the torch generator, so one torch seed
fixes the whole sample.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from pdviz.errors import InvalidArgumentError, check_choice, check_positive

Tensor = torch.Tensor

# --- 8 Gaussians: its geometry is shared with the exact mixture energy of pdviz.energies ----------
_EIGHT_SCALE = 1.414  # the scripts divide by 1.414, not sqrt(2); kept for the same scale
EIGHT_RADIUS = 4.0 / _EIGHT_SCALE  # ≈ 2.8289, radius of the mode centres
EIGHT_STD = 0.5 / _EIGHT_SCALE  # ≈ 0.3536, standard deviation of each mode
_angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
EIGHT_CENTRES = EIGHT_RADIUS * torch.stack([torch.cos(_angles), torch.sin(_angles)], dim=1)  # [8, 2] f64

# --- rings: four concentric circles with Gaussian noise --------------------------------------------
RING_RADII = (3.0, 2.25, 1.5, 0.75)
RING_STD = 0.08


def _check_n(n: object) -> int:
    # numpy integers are fine; bools and floats are not.
    if isinstance(n, numbers.Integral) and not isinstance(n, bool):
        n = int(n)
    return check_positive("n", n, integer=True)


def _numpy_seed(generator: torch.Generator) -> int:
    """A NumPy/scikit-learn seed drawn from the torch generator (so one torch seed fixes everything)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """8 Gaussians of std 0.5/1.414 centred on a circle of radius 4/1.414. Returns float32 [n, 2]."""
    k = torch.randint(0, 8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = EIGHT_CENTRES[k] + EIGHT_STD * noise
    return x.float()


def swissroll(n: int, generator: torch.Generator) -> Tensor:
    """scikit-learn swiss roll (noise 1.0), coordinates 0 and 2, divided by 5. Returns float32 [n, 2]."""
    from sklearn.datasets import make_swiss_roll  # imported here: scikit-learn takes ~0.5 s to import

    data, _ = make_swiss_roll(n_samples=n, noise=1.0, random_state=_numpy_seed(generator))
    return torch.from_numpy(data[:, [0, 2]] / 5.0).float()


def circles(n: int, generator: torch.Generator) -> Tensor:
    """scikit-learn two circles (factor 0.5, noise 0.08), times 3. Returns float32 [n, 2]."""
    from sklearn.datasets import make_circles

    data, _ = make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=_numpy_seed(generator))
    return torch.from_numpy(data * 3.0).float()


def moons(n: int, generator: torch.Generator) -> Tensor:
    """scikit-learn two moons (noise 0.1), times 2, shifted by (-1, -0.2). Returns float32 [n, 2]."""
    from sklearn.datasets import make_moons

    data, _ = make_moons(n_samples=n, noise=0.1, random_state=_numpy_seed(generator))
    shift = torch.tensor([-1.0, -0.2], dtype=torch.float64)
    return (torch.from_numpy(data * 2.0) + shift).float()


def rings(n: int, generator: torch.Generator) -> Tensor:
    """Four concentric circles (radii 3, 2.25, 1.5, 0.75, equal shares) plus N(0, 0.08²) noise.

    The law is exactly the ``rings`` energy of :mod:`pdviz.energies`. Returns float32 [n, 2].
    """
    radii = torch.tensor(RING_RADII, dtype=torch.float64)
    r = radii[torch.randint(0, len(RING_RADII), (n,), generator=generator)]
    theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    x = r[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    x = x + RING_STD * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float()


def pinwheel(n: int, generator: torch.Generator) -> Tensor:
    """Five arms: (radial ~ N(1, 0.3²), tangential ~ N(0, 0.1²)) rotated by -(arm angle + 0.25 e^radial), × 2.

    The scripts rotate by minus the angle (their ``f @ R``); rotating by plus it gives the mirror image.
    Returns float32 [n, 2].
    """
    arm = torch.randint(0, 5, (n,), generator=generator).double()
    f = torch.randn(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([0.3, 0.1])
    f[:, 0] += 1.0
    # The twist grows with the radial coordinate, which bends each arm into a pinwheel blade.
    angle = arm * (2 * math.pi / 5) + 0.25 * torch.exp(f[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    x = torch.stack([c * f[:, 0] + s * f[:, 1], c * f[:, 1] - s * f[:, 0]], dim=1)
    return (2.0 * x).float()


def two_spirals(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaved spirals (one the point mirror of the other), / 3, plus N(0, 0.1²). float32 [n, 2]."""
    s = torch.sqrt(torch.rand(n, generator=generator, dtype=torch.float64)) * (3 * math.pi)
    jitter = 0.5 * torch.rand(n, 2, generator=generator, dtype=torch.float64)
    arm = torch.stack([-torch.cos(s) * s, torch.sin(s) * s], dim=1) + jitter
    sign = 1.0 - 2.0 * torch.randint(0, 2, (n, 1), generator=generator).double()
    x = sign * arm / 3.0 + 0.1 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float()


def checkerboard(n: int, generator: torch.Generator) -> Tensor:
    """An 4 × 4 checkerboard of 8 filled unit squares on [-2, 2]², times 2 (so [-4, 4]²). float32 [n, 2]."""
    x1 = 4.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 2.0
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    flip = torch.randint(0, 2, (n,), generator=generator).double()  # drawn after u, as the scripts do
    x2 = u - 2.0 * flip + torch.remainder(torch.floor(x1), 2.0)
    return (2.0 * torch.stack([x1, x2], dim=1)).float()


DATASETS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "swissroll": swissroll,
    "8gaussians": eight_gaussians,
    "pinwheel": pinwheel,
    "circles": circles,
    "moons": moons,
    "2spirals": two_spirals,
    "checkerboard": checkerboard,
    "rings": rings,
}

MODE_CENTRES: dict[str, Tensor] = {"8gaussians": EIGHT_CENTRES.float()}


def sample(name: str, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points of the toy dataset ``name``.

    Parameters
    ----------
    name : str
        One of ``DATASETS``.
    n : int
        Number of points, > 0.
    seed : int, optional
        Seeds a fresh generator: the same seed gives the same points. Give ``seed`` or ``generator``,
        not both; with neither, a generator seeded from fresh OS entropy is used (no global RNG is touched).
    generator : torch.Generator, optional
        Source of randomness; it is advanced.

    Returns
    -------
    Tensor
        float32 ``[n, 2]``.

    Examples
    --------
    >>> sample("8gaussians", 3, seed=0).shape
    torch.Size([3, 2])
    """
    check_choice("name", name, DATASETS, what="dataset")
    n = _check_n(n)
    if seed is not None and generator is not None:
        raise InvalidArgumentError("give seed or generator, not both")
    if generator is None:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= 2**63 - 1:
                raise InvalidArgumentError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
            generator.manual_seed(int(seed))
    elif not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return DATASETS[name](n, generator)


def _gaussian_mixture_entropy(centres: Tensor, std: float, h: float = 0.02, pad: float = 9.0) -> float:
    """Differential entropy (nats) of an equal-weight isotropic Gaussian mixture, by quadrature.

    ``H = -∫ p log p`` by the midpoint rule on a square grid of spacing ``h`` covering the centres ± ``pad``
    standard deviations (the mass outside is < 1e-17). The midpoint rule is spectrally accurate for smooth,
    rapidly decaying integrands: with h = std/17 its error is far below 1e-10.
    """
    c = centres.double()
    lo, hi = float(c.min()) - pad * std, float(c.max()) + pad * std
    m = int(math.ceil((hi - lo) / h))
    xs = lo + (torch.arange(m, dtype=torch.float64) + 0.5) * h
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    d2 = torch.cdist(pts, c).square()
    logp = torch.logsumexp(-d2 / (2 * std**2), dim=1) - math.log(len(c)) - math.log(2 * math.pi * std**2)
    return float(-(logp.exp() * logp).sum() * h * h)


def _rings_entropy(h: float = 1e-4, r_max: float = 4.0) -> float:
    """Entropy of the rings density by radial quadrature: a circle of radius r blurred by N(0, s²) has
    ``p(ρ) = exp(-(ρ - r)² / 2s²) I0e(ρ r / s²) / (2π s²)`` at distance ρ from the centre (I0e: scaled Bessel)."""
    rho = (torch.arange(int(r_max / h), dtype=torch.float64) + 0.5) * h
    s2 = RING_STD**2
    p = sum(torch.exp(-((rho - r) ** 2) / (2 * s2)) * torch.special.i0e(rho * r / s2) for r in RING_RADII)
    p = p / (len(RING_RADII) * 2 * math.pi * s2)
    return float(-(p * p.clamp_min(1e-300).log() * 2 * math.pi * rho).sum() * h)


# The data-entropy bound of every log-likelihood plot: no model's expected held-out log-likelihood exceeds
# -ENTROPY[name] (nats). Exact where a closed form exists: 8gaussians by quadrature of the mixture (2.8319;
# the modes overlap slightly, so it is below log 8 + log(2πe s²) = 2.8382), rings by radial quadrature,
# checkerboard uniform on 8 squares of area 4 (log 32). The others are Kozachenko-Leonenko k-nearest-neighbour
# estimates on 3 × 200 000 samples (benchmarks/entropy.py); ENTROPY_ERROR is their error bar: the spread
# over repeats (at most 0.003) plus the estimator's bias measured on the three exact ones (at most 0.009).
ENTROPY: dict[str, float] = {
    "8gaussians": _gaussian_mixture_entropy(EIGHT_CENTRES, EIGHT_STD, h=0.05),
    "rings": _rings_entropy(),
    "checkerboard": math.log(32.0),
    "2spirals": 2.640,
    "circles": 3.268,
    "moons": 2.393,
    "pinwheel": 2.314,
    "swissroll": 2.666,
}
ENTROPY_ERROR: dict[str, float] = {
    name: 0.0 if name in ("8gaussians", "rings", "checkerboard") else 0.012 for name in ENTROPY
}
