"""Ways to learn an EBM beyond the paper (docs/method.md §7): the losses and the one model they need.

==================  ===========================================================================================
:func:`nce_loss`    noise-contrastive estimation against a known noise density ``q``, with a learned log ``Z``
:func:`dsm_loss`    denoising score matching of ``-∇E`` over one or several noise levels
:func:`ed_loss`     energy discrepancy: data against twice-perturbed data, no sampling at all
:func:`drl_pairs`   diffusion recovery likelihood: a noisier copy of each point at a random level of the ladder
:func:`drl_chain`   … and Langevin on the conditional energy ``E(x, t) + ‖x - ỹ‖² / (2 σ̃²)`` started at ``ỹ``
==================  ===========================================================================================

Each loss is a scalar whose θ-gradient is the method's update; :mod:`pdviz.strategies` wraps each in a
strategy of the one trainer. Jarzynski's weights are :func:`pdviz.samplers.ula_steps` with ``weighted=True``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pdviz import samplers
from pdviz.energies import value_and_grad
from pdviz.models import EBM, _check_input, _check_seed, mlp

__all__ = ["ConditionalEBM", "nce_loss", "dsm_loss", "ed_loss", "drl_pairs", "drl_chain"]

EnergyFn = Callable[[Tensor], Tensor]


def _normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator``, on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=generator.device).to(like)


def nce_loss(energy: EnergyFn, data: Tensor, noise: Tensor, log_q: EnergyFn, log_z: Tensor) -> Tensor:
    """Gutmann and Hyvärinen's logistic loss: data [b, d] against ``ν = m / b`` noise points per data point
    (noise [m, d] drawn from ``q``; ``log_q``: ``x [n, d] -> log q(x) [n]``).

    The logit of "data" is ``ℓ(x) = -E(x) - log_z - log q(x) - log ν``; the loss is
    ``mean_data softplus(-ℓ) + ν mean_noise softplus(ℓ)``, minimised by ``p = exp(-E - log_z)`` = the data
    law when the model can express it: ``log_z`` (a scalar) learns the log-normaliser of ``exp(-E)``.
    """
    log_nu = math.log(noise.shape[0] / data.shape[0])
    logits = -energy(torch.cat([data, noise])) - log_z - log_q(torch.cat([data, noise])) - log_nu
    b = data.shape[0]
    return F.softplus(-logits[:b]).mean() + math.exp(log_nu) * F.softplus(logits[b:]).mean()


def dsm_loss(energy: EnergyFn, data: Tensor, levels: tuple[float, ...], generator: torch.Generator) -> Tensor:
    """Vincent's denoising score matching, the batch split evenly over the noise ``levels`` σ_l:
    ``x̃ = x + σ ξ`` and ``½ σ² ‖-∇E(x̃) + (x̃ - x) / σ²‖²`` averaged over the batch (the σ² weights of Song
    and Ermon make the levels comparable). One gradient evaluation, kept in the graph for θ."""
    sigma = torch.tensor(levels, dtype=data.dtype, device=data.device).repeat_interleave(
        math.ceil(data.shape[0] / len(levels))
    )[: data.shape[0], None]
    noisy = data + sigma * _normal(data.shape, data, generator)
    _, grad = value_and_grad(energy, noisy.requires_grad_(True), create_graph=True)
    residual = -grad + (noisy - data) / sigma**2
    return 0.5 * (sigma.squeeze(1) ** 2 * residual.square().sum(1)).mean()


def ed_loss(
    energy: EnergyFn, data: Tensor, scale: float, m: int, w: float, generator: torch.Generator
) -> Tensor:
    """Energy discrepancy (Schröder et al. 2023) with Gaussian perturbations of std ``scale`` = √t:
    ``y = x + √t ξ``, ``x'_j = y + √t ξ_j`` (j = 1..m) and
    ``mean_x log(w/m + (1/m) Σ_j exp(E(x) - E(x'_j)))``. The stabiliser ``w`` keeps the loss bounded
    below. Energies only: no gradient in x, no sampling from the model."""
    b, d = data.shape
    y = data + scale * _normal((b, d), data, generator)
    contrast = (y[:, None, :] + scale * _normal((b, m, d), data, generator)).reshape(b * m, d)
    e = energy(torch.cat([data, contrast]))
    diff = e[:b, None] - e[b:].reshape(b, m)
    stabiliser = torch.full((b, 1), math.log(w), dtype=diff.dtype, device=diff.device)
    return (torch.logsumexp(torch.cat([diff, stabiliser], 1), 1) - math.log(m)).mean()


class ConditionalEBM(EBM):
    """The energy of diffusion recovery likelihood, ``E(x, t) = MLP([x, t]) + base(x)``: :class:`EBM`'s
    base Gaussian and an MLP that also reads the level ``t`` in [0, 1]. ``forward(x)`` is the data level
    ``E(x, 0)``, the model every metric evaluates; ``forward(x, t)`` with ``t`` [n] the conditional levels."""

    def __init__(self, dim: int = 2, hidden: int = 300, depth: int = 2, activation: str = "swish",
                 base_mean=None, base_std=None, seed: int | None = None) -> None:  # fmt: skip
        super().__init__(dim, hidden, depth, activation, base_mean, base_std, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_check_seed(seed) + 1)
            self.net = mlp(dim + 1, hidden, depth, activation)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        x_ = _check_input(x, self.dim, "EBM", self.base_mean)
        t_ = torch.zeros_like(x_[:, 0]) if t is None else t.to(x_)
        return (self.net(torch.cat([x_, t_[:, None]], 1)).squeeze(-1) + self.base_energy(x_)).to(x.dtype)


def drl_pairs(
    data: Tensor, levels: tuple[float, ...], generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """A noisier copy of each point at a uniformly drawn level ``l`` of the ladder σ_1 < … < σ_L (< 1):
    ``y = √(1 - σ²) x + σ ε`` (Gao et al.'s variance-preserving step), returned rescaled,
    ``ỹ = y / √(1 - σ²) = x + σ̃ ε`` with ``σ̃² = σ² / (1 - σ²)``. Returns (``t = l / (L - 1)`` [b] in [0, 1],
    ``ỹ`` [b, d], ``σ̃²`` [b]). The conditional ``p(x | ỹ) ∝ exp(-E(x, t) - ‖x - ỹ‖² / (2 σ̃²))`` is exact."""
    n_levels, b = len(levels), data.shape[0]
    index = torch.randint(n_levels, (b,), generator=generator, device=generator.device).to(data.device)
    sigma2 = torch.tensor(levels, dtype=data.dtype, device=data.device)[index] ** 2
    var = sigma2 / (1 - sigma2)
    eps = _normal(data.shape, data, generator)
    return index.to(data.dtype) / max(n_levels - 1, 1), data + var.sqrt()[:, None] * eps, var


def drl_chain(model: ConditionalEBM, t: Tensor, y: Tensor, var: Tensor, n_steps: int, ratio: float,
              generator: torch.Generator) -> Tensor:  # fmt: skip
    """``n_steps`` MALA steps on the conditional energy ``E(x, t) + ‖x - ỹ‖² / (2 σ̃²)`` from ``ỹ`` [b, d],
    each point with its own step ``ε = ratio · σ̃²`` (the conditional's width sets the scale, as in Gao et
    al.): the chain runs in ``u = (x - ỹ) / σ̃``, where every point's step is ``ratio``. Gao et al. use
    unadjusted Langevin; here it diverged on 2-D toys (the energy grows steeper than σ̃ and the chain flies
    off), and the accept/reject step keeps the negatives in the conditional. Returns the negatives [b, d]
    (detached); ``n_steps + 1`` gradient evaluations."""
    scale = var.sqrt()[:, None]

    def whitened(u: Tensor) -> Tensor:
        return model(y + scale * u, t) + 0.5 * u.square().sum(1)

    state = samplers.init(torch.zeros_like(y), whitened)
    for _ in range(n_steps):
        state, _ = samplers.mala_step(state, whitened, step_size=ratio, generator=generator)
    return (y + scale * state.position).detach()
