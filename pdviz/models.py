"""Energy-based models: the paper's MLP energy with a trainable Gaussian base, and a small conv energy.

``EBM`` (docs/method.md §6) is

    E_θ(x) = f_θ(x) + Σ_j [ (x_j - μ_j)² / (2 s_j²) + log s_j + ½ log 2π ],

an MLP ``f_θ: R^d -> R`` plus the negative log-density of a diagonal Gaussian base ``N(μ, diag s²)``
whose mean ``μ`` and log-std ``log s`` are trainable. With ``f_θ ≡ 0`` the model is exactly the base,
so ``exp(-E)`` starts as a normalised density near the data (``EBM.from_data``).

``ConvEBM`` maps flattened images ``[n, C*H*W]`` to energies ``[n]`` with a few strided convolutions and
a linear head; it works for 8x8 digits and 28x28 MNIST alike.

Both models keep plain parameters and no buffers, so ``torch.func.functional_call`` works (PD-beta
differentiates the energy with respect to the parameters). Weight initialisation runs under
``torch.random.fork_rng`` with the given ``seed``: the global RNG is left untouched and the same seed
gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pdviz import errors
from pdviz.errors import InvalidArgumentError

__all__ = ["ACTIVATIONS", "EBM", "ConvEBM", "GridEnergy", "mlp"]


class LeakyReLU02(nn.LeakyReLU):
    """LeakyReLU with the scripts' negative slope 0.2."""

    def __init__(self) -> None:
        super().__init__(negative_slope=0.2)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": nn.SiLU,  # x * sigmoid(x)
    "leaky_relu": LeakyReLU02,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    errors.check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def _check_seed(seed: int | None) -> int:
    """A concrete seed: the given one, or one drawn from OS entropy (never from the global RNG)."""
    if seed is None:
        return int(torch.Generator().seed()) % (2**63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int or None, got {seed!r}")
    return seed


def _as_vector(name: str, value, dim: int, *, positive: bool) -> Tensor:
    """``value`` (number, sequence or tensor) as a finite float32 vector [dim]; scalars broadcast."""
    try:
        t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgumentError(
            f"{name} must be a number or a sequence of {dim} numbers, got {value!r}"
        ) from exc
    if t.ndim == 0:
        t = t.expand(dim).clone()
    if t.shape != (dim,):
        raise InvalidArgumentError(
            f"{name} must be a number or have shape [{dim}], got shape {list(t.shape)}"
        )
    if not torch.isfinite(t).all() or (positive and not (t > 0).all()):
        need = "finite and > 0" if positive else "finite"
        raise InvalidArgumentError(f"{name} must be {need}, got {t.tolist()}")
    return t


def _check_input(x: Tensor, dim: int, what: str, param: Tensor) -> Tensor:
    """Shape check for a batch [n, dim] (or one point [dim]); cast to the parameters' dtype."""
    if not isinstance(x, Tensor):
        raise InvalidArgumentError(f"x must be a torch.Tensor of shape [n, {dim}], got {type(x).__name__}")
    if x.ndim not in (1, 2) or x.shape[-1] != dim:
        raise InvalidArgumentError(f"x must have shape [n, {dim}] for this {what}, got {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise InvalidArgumentError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    return x.to(param.dtype)


def mlp(dim: int, hidden: int, depth: int, activation: str) -> nn.Sequential:
    """``d -> hidden -> ... -> hidden -> 1`` (``depth`` hidden layers) with the named activation."""
    layers: list[nn.Module] = []
    for width in [dim] + [hidden] * (depth - 1):
        layers += [nn.Linear(width, hidden), _activation(activation)]
    return nn.Sequential(*layers, nn.Linear(hidden, 1))


class EBM(nn.Module):
    """MLP energy plus a trainable diagonal-Gaussian base (docs/method.md §6).

    ``E(x) = MLP(x) + ½ Σ_j ((x_j - μ_j) / s_j)² + Σ_j log s_j + (d/2) log 2π``.

    Parameters
    ----------
    dim : int
        Input dimension d.
    hidden : int
        Width of each hidden layer (the scripts: 300).
    depth : int
        Number of hidden layers (the scripts: 2, i.e. d -> 300 -> 300 -> 1).
    activation : str
        A key of :data:`ACTIVATIONS` ("swish" in the scripts, "leaky_relu" with slope 0.2 for gamma).
    base_mean, base_std : float, sequence or Tensor [d], optional
        Initial mean (default 0) and std (default 1) of the base Gaussian; see :meth:`from_data`.
    seed : int, optional
        Seed for the weight initialisation; the global RNG is not used (``None``: OS entropy).

    Examples
    --------
    >>> model = EBM.from_data(data, seed=0)        # data [n, 2]
    >>> energy = model(x)                          # x [m, 2] -> [m]
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 300,
        depth: int = 2,
        activation: str = "swish",
        base_mean=None,
        base_std=None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = errors.check_positive("dim", dim, integer=True, high=100_000)
        self.hidden = errors.check_positive("hidden", hidden, integer=True, high=errors.MAX_GRID)
        self.depth = errors.check_positive("depth", depth, integer=True, high=64)
        errors.check_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        mean = _as_vector("base_mean", 0.0 if base_mean is None else base_mean, dim, positive=False)
        std = _as_vector("base_std", 1.0 if base_std is None else base_std, dim, positive=True)
        seed = _check_seed(seed)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = mlp(dim, hidden, depth, activation)
        self.base_mean = nn.Parameter(mean)
        self.base_log_std = nn.Parameter(std.log())

    @classmethod
    def from_data(cls, data: Tensor, **kw) -> EBM:
        """Build an EBM whose base Gaussian has the per-coordinate mean and std of ``data`` [n, d].

        ``kw`` is passed to the constructor (``dim`` defaults to ``data.shape[1]``). Stds are floored at
        1e-3 so that constant coordinates do not give an infinite energy.
        """
        errors.check_points("data", data, dim=kw.get("dim"))
        if data.shape[0] < 2:
            raise InvalidArgumentError(f"data must hold at least 2 points to fit a std, got {data.shape[0]}")
        for key in ("base_mean", "base_std"):
            if key in kw:
                raise InvalidArgumentError(
                    f"from_data fits {key} from the data; do not pass it (got {key}=...)"
                )
        d = data.detach().to(torch.float64)
        kw.setdefault("dim", data.shape[1])
        return cls(base_mean=d.mean(0), base_std=d.std(0).clamp_min(1e-3), **kw)

    @property
    def base_std(self) -> Tensor:
        """Std s [d] of the base Gaussian (``exp`` of the trainable log-std)."""
        return self.base_log_std.exp()

    def base_energy(self, x: Tensor) -> Tensor:
        """Negative log-density of the base Gaussian, ``x [n, d] -> [n]`` (normalised)."""
        x_ = _check_input(x, self.dim, "EBM", self.base_mean)
        z = (x_ - self.base_mean) * torch.exp(-self.base_log_std)
        out = 0.5 * (z * z).sum(-1) + self.base_log_std.sum() + 0.5 * self.dim * math.log(2 * math.pi)
        return out.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Energy ``E(x)``: ``x [n, d] -> [n]`` (a single point [d] gives a scalar, for ``torch.func``).

        Computed in the parameters' dtype and returned in ``x``'s dtype.
        """
        x_ = _check_input(x, self.dim, "EBM", self.base_mean)
        return (self.net(x_).squeeze(-1) + self.base_energy(x_)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, depth={self.depth}, activation={self.activation!r}"


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvEBM(nn.Module):
    """A small convolutional energy for images, ``x [n, C*H*W] -> E [n]``.

    Four convolutions (3x3 stride 1, 4x4 stride 2, 4x4 stride 2, 3x3 stride 1, all padded) with the chosen
    activation, then a linear head on the flattened feature map. 28x28 becomes 7x7, 8x8 becomes 2x2.
    Inputs may also be given as ``[n, C, H, W]``.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)`` (or ``(H, W)`` for one channel); H and W >= 4. ``(1, 28, 28)`` for MNIST,
        ``(1, 8, 8)`` for scikit-learn digits.
    channels : tuple of int
        Output channels of the four convolutions (the last one is repeated by the fourth conv if three
        are given).
    activation : str
        A key of :data:`ACTIVATIONS` ("swish" default; "leaky_relu" is slope 0.2).
    seed : int, optional
        Seed for the weight initialisation (the global RNG is not used).
    data : Tensor [n, C*H*W], optional
        With data, the energy gains a Gaussian base fitted to all its pixels, one trainable mean ``μ`` and
        log-std ``log s``: ``E(x) = f(x) + Σ_j (x_j - μ)²/(2 s²) + d log s + (d/2) log 2π``. It makes
        ``exp(-E)`` normalisable when ``f`` grows slower than quadratically (Swish/ReLU nets), so AIS has a
        ``Z`` to estimate. Without data the energy is the bare conv net, as in the scripts' MNIST runs.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64, 64),
        activation: str = "swish",
        seed: int | None = None,
        data: Tensor | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
        if shape is not None and len(shape) == 2:
            shape = (1, *shape)
        if (
            shape is None
            or len(shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
            or min(shape[1:]) < 4
        ):
            raise InvalidArgumentError(
                f"image_shape must be (C, H, W) or (H, W) of positive ints with H, W >= 4, got {image_shape!r}"
            )
        chans = tuple(channels) if isinstance(channels, (tuple, list)) else ()
        if len(chans) == 3:
            chans = (*chans, chans[-1])
        if len(chans) != 4 or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 < c <= errors.MAX_GRID for c in chans
        ):
            raise InvalidArgumentError(
                f"channels must be 3 or 4 ints in [1, {errors.MAX_GRID}], got {channels!r}"
            )
        errors.check_choice("activation", activation, ACTIVATIONS)
        seed = _check_seed(seed)
        self.image_shape = shape
        self.dim = shape[0] * shape[1] * shape[2]
        self.activation = activation

        specs = [(3, 1, 1), (4, 2, 1), (4, 2, 1), (3, 1, 1)]  # (kernel, stride, padding)
        h, w = shape[1], shape[2]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            c_in = shape[0]
            for c_out, (k, s, p) in zip(chans, specs):
                layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), _activation(activation)]
                c_in = c_out
                h, w = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(c_in * h * w, 1)
        self.base_mean = self.base_log_std = None
        if data is not None:
            d = data.detach().double()
            self.base_mean = nn.Parameter(torch.tensor(float(d.mean())))
            self.base_log_std = nn.Parameter(torch.tensor(math.log(max(float(d.std()), 1e-3))))

    def base_energy(self, x: Tensor) -> Tensor:
        """``-log N(x; μ, s² I)`` of flattened images ``[n, d] -> [n]``; zero without a base."""
        if self.base_mean is None:
            return x.new_zeros(x.shape[0])
        z = (x - self.base_mean) * torch.exp(-self.base_log_std)
        return 0.5 * (z * z).sum(-1) + self.dim * (self.base_log_std + 0.5 * math.log(2 * math.pi))

    def ais_base(self) -> tuple[Tensor, Tensor]:
        """Mean and std [d] of the Gaussian AIS starts from: the model's base, or N(0, I) without one."""
        ref = self.head.weight.detach()
        if self.base_mean is None:
            return ref.new_zeros(self.dim), ref.new_ones(self.dim)
        return self.base_mean.detach().expand(self.dim), self.base_log_std.detach().exp().expand(self.dim)

    def forward(self, x: Tensor) -> Tensor:
        """Energy of flattened images ``[n, C*H*W]`` (or ``[n, C, H, W]``) -> ``[n]``."""
        param = self.head.weight
        if isinstance(x, Tensor) and x.ndim == 4 and tuple(x.shape[1:]) == self.image_shape:
            x_ = x.to(param.dtype)
        else:
            x_ = _check_input(x, self.dim, f"ConvEBM with image_shape {self.image_shape}", param)
            if x_.ndim == 1:
                return self.forward(x_.unsqueeze(0)).squeeze(0).to(x.dtype)
            x_ = x_.reshape(x_.shape[0], *self.image_shape)
        e = self.head(self.features(x_).flatten(1)).squeeze(-1)
        return (e + self.base_energy(x_.flatten(1))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, activation={self.activation!r}"


class GridEnergy(nn.Module):
    """pd-gamma's energy: ``E(x) = ½ Σ ((x - μ)/s)² + Σ log s + bilinear(values)(x)``, a Gaussian base plus a
    table ``values`` [size, size] ([iy, ix]) on a 2-D grid (its one parameter, so the lag meter can take
    ``∇_values E``; changed by the functional-gradient step, never by an optimiser). The base confines particles outside the box, where the table's edge
    values extend as constants (``Grid.interpolate``). ``x [n, 2] -> [n]``, differentiable in x."""

    def __init__(self, base_mean: Tensor, base_std: Tensor, grid) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("base_mean", base_mean.detach().clone().float())
        self.register_buffer("base_std", base_std.detach().clone().float())
        self.values = nn.Parameter(torch.zeros(grid.size, grid.size))

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.base_mean) / self.base_std
        return 0.5 * (z * z).sum(-1) + self.base_std.log().sum() + self.grid.interpolate(self.values, x)
