"""Learning an EBM by contrast (docs/method.md §1): the configuration, its presets and the trainer loop.

Each iteration minimises ``loss(θ) = mean_i E_θ(data_i) - Σ_j w_j E_θ(neg_j)`` (:func:`contrastive_loss`),
minus the log-likelihood gradient when the negatives follow ``p_θ ∝ exp(-E_θ)``; how they are made is the
strategy (:data:`STRATEGIES`, :mod:`pdviz.strategies`). :class:`Trainer` is a thin loop that records curves
and evaluation frames into one :class:`pdviz.samplers.History` and checkpoints that continue bit for bit.
Image training is a configuration of the same loop (``PRESETS["digits"]``, ``PRESETS["mnist"]``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Normal, Uniform
from tqdm.auto import tqdm

from pdviz import checkpoint, datasets, distributed, images, logs, metrics, models, samplers
from pdviz.config import PRESETS, RUN_KEYS, TrainConfig, _check_keys, learning_rate, make_config  # noqa: F401
from pdviz.errors import CheckpointError, DivergenceError, InvalidArgumentError, check_finite_state
from pdviz.grid import Grid
from pdviz.strategies import STRATEGIES, Context, Negatives, Strategy, contrastive_loss  # noqa: F401

KIND = checkpoint.TRAINER_KIND
EVAL_CHUNK = 4096  # points per no-grad pass in evaluate(): keeps activations in cache
MMD_POINTS = 256  # particles and held-out points per side of the evaluation MMD² (O(n²) kernel sums)
LAG_GRID = 100  # cells per side of the lag meter's grid: 0.1 wide on [-5, 5]², a quarter of the cost of 200


def _load_data(cfg: TrainConfig, data: Tensor | None) -> tuple[Tensor | None, Tensor, int | None]:
    """(training data [N, d] or None for a toy dataset, held-out data [n_eval, d], pixel levels or None)."""
    if data is not None:
        if not isinstance(data, Tensor) or data.ndim != 2 or len(data) < 2 or not data.is_floating_point():
            got = f"{data.dtype} {list(data.shape)}" if isinstance(data, Tensor) else type(data).__name__
            raise InvalidArgumentError(f"data must be a float tensor [N >= 2, d], got {got}")
        if not torch.isfinite(data).all():
            raise InvalidArgumentError("data holds NaN or Inf values")
        held_out = samplers.make_generator((cfg.seed + 2) % 2**63)
        index = torch.randperm(data.shape[0], generator=held_out)[: cfg.n_eval]
        return data.detach().float(), data.detach().float()[index], None
    if cfg.dataset in datasets.DATASETS:
        return None, datasets.sample(cfg.dataset, cfg.n_eval, seed=(cfg.seed + 1_000_003) % 2**63), None
    if cfg.dataset == "custom":
        raise InvalidArgumentError("dataset 'custom' needs data=: a float tensor [N, d]")
    size = cfg.image_size
    train = images.load(cfg.dataset, "train", size=size, dequantize=False)
    test = images.load(cfg.dataset, "test", size=size, dequantize=False)[: cfg.n_eval]
    return train, test, images.IMAGE_DATASETS[cfg.dataset].levels


class Trainer:
    """The contrastive training loop (docs/method.md §1) with a strategy of :data:`STRATEGIES`.

    ``Trainer(config, data=None, model=None)``: ``data`` [N, d] trains on custom data instead of
    ``config.dataset``; ``model`` (an energy ``x [n, d] -> [n]``) replaces the one the config builds.
    Attributes: ``config``, ``model``, ``state`` (a :class:`pdviz.samplers.State` of the particles), ``aux``
    (the strategy's extra state), ``history`` (a :class:`pdviz.samplers.History`, meta kind "training"),
    ``iteration``, ``generator`` (chains) and ``data_generator`` (batches), ``grid`` (evaluation grid, 2-D).
    """

    def __init__(self, config: TrainConfig | None = None, data: Tensor | None = None,
                 model: nn.Module | None = None, *, _initialise: bool = True):  # fmt: skip
        cfg = self.config = make_config() if config is None else config
        if not isinstance(cfg, TrainConfig):
            raise InvalidArgumentError(
                f"config must be a TrainConfig (make_config), got {type(cfg).__name__}"
            )
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise InvalidArgumentError("device 'cuda' was asked for but torch.cuda.is_available() is False")
        if cfg.dataset in images.IMAGE_DATASETS and cfg.preset not in images.IMAGE_DATASETS:
            msg = f"dataset {cfg.dataset!r} holds images; the {cfg.preset!r} preset trains a 2-D MLP"
            use = f"use make_config({cfg.dataset!r}) (pdviz train --preset {cfg.dataset})"
            raise InvalidArgumentError(f"{msg}: {use}")
        self.device = torch.device(cfg.device)
        self.strategy = STRATEGIES[cfg.strategy]
        self.rank, self.world = distributed.setup(cfg)  # (0, 1) without torchrun
        local = self._local = distributed.local_config(cfg, self.rank, self.world)  # this rank's share
        # the data stream on the CPU from its own generator: the same batches for every strategy and device
        self.data_generator = samplers.make_generator(local.seed)
        self.generator = samplers.make_generator((local.seed + 1) % 2**63, device=cfg.device)
        self._train, self._eval, self._levels = _load_data(cfg, data)
        if self._train is not None and cfg.batch_size > len(self._train):  # said, not silently shrunk
            n = len(self._train)
            msg = f"batch_size {cfg.batch_size} is larger than the data ({n} points); use <= {n}"
            raise InvalidArgumentError(msg)
        self._toy = data is None and cfg.dataset in datasets.DATASETS
        self.dim = int(self._eval.shape[1])
        if self.strategy.needs_grid and self.dim != 2:
            msg = f"strategy {cfg.strategy!r} works on a 2-D grid; the data have d = {self.dim}"
            raise InvalidArgumentError(msg)
        if self.strategy.max_dim is not None and self.dim > self.strategy.max_dim:
            need = f"needs a d x d Jacobian per particle: d <= {self.strategy.max_dim}, the data have d = {self.dim}"
            raise InvalidArgumentError(f"strategy {cfg.strategy!r} {need}")
        self.grid = Grid(cfg.grid_low, cfg.grid_high, cfg.grid_size) if self.dim == 2 else None
        self.field_grid = Grid(cfg.grid_low, cfg.grid_high, cfg.field_grid_size) if self.dim == 2 else None
        if self.grid is not None:
            metrics.check_grid_holds(self.grid, self._eval)
        self._eval = self._eval.to(self.device)
        batch = self._batch()
        self._base = (batch.mean(0), batch.std(0).clamp_min(1e-3), batch.min(0).values, batch.max(0).values)
        self._build(model, batch)
        self.iteration, self._lag = 0, {}
        entropy = datasets.ENTROPY.get(cfg.dataset) if self._toy else None
        bound = None if entropy is None else -entropy
        meta = {"kind": "training", "dataset": cfg.dataset, "strategy": cfg.strategy, "entropy_bound": bound,
                "n_particles": cfg.n_particles}  # fmt: skip
        self.history = samplers.History(meta=meta)
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        with self._guard():
            # Trainer.load overwrites the state: only its shapes matter there, so no initial Langevin steps
            ctx = self._context(local if _initialise else dataclasses.replace(local, n_init_steps=0))
            self.state, self.aux, n_grad = self.strategy.init(ctx)
        times = {"init_wall_time": time.perf_counter() - t_wall, "init_cpu_time": time.process_time() - t_cpu}
        self.optimizer = self._optimizer()  # after the clock: Adam's first construction imports torch._dynamo
        self.history.meta.update(times, init_n_grad=n_grad)
        if _initialise:
            self._record()

    def _build(self, model: nn.Module | None, batch: Tensor) -> None:
        """The model (given, built by the strategy, or built from the config) and its EMA copy (when the
        strategy steps an optimiser)."""
        cfg, optimised = self.config, self.strategy.update is None
        if model is None and self.strategy.model is not None:
            model = self.strategy.model(batch, self._base, self._context())
        self.model = (model if model is not None else self._build_model(batch)).to(self.device)
        self._loss_model = distributed.wrap(self.model, self.device)  # DDP on N > 1 ranks
        averaged = cfg.ema > 0 and optimised
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if averaged else None

    def _optimizer(self) -> torch.optim.Optimizer | None:
        """Adam over θ and the strategy's own trainable values (aux tensors that require a gradient: NCE's
        log Z); None when the strategy updates the model itself (pd-gamma)."""
        if self.strategy.update is not None:
            return None
        own = [v for v in self.aux.values() if isinstance(v, Tensor) and v.requires_grad]
        return torch.optim.Adam([*self.model.parameters(), *own], lr=self.config.lr, betas=self.config.betas)

    def _build_model(self, batch: Tensor) -> nn.Module:
        cfg = self.config
        if cfg.model == "mlp":
            return models.EBM.from_data(
                batch.cpu(), hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation, seed=cfg.seed
            )
        shape = cfg.image_shape
        if shape is None and cfg.dataset in images.IMAGE_DATASETS:
            shape = images.image_shape(cfg.dataset, cfg.image_size)
        if shape is None or math.prod(shape) != self.dim:
            msg = f"model 'conv' needs image_shape (C, H, W) with C*H*W = d = {self.dim}, got {shape!r}"
            raise InvalidArgumentError(msg)
        base = batch.cpu() if cfg.image_base else None
        return models.ConvEBM(
            shape, channels=cfg.channels, activation=cfg.activation, seed=cfg.seed, data=base
        )

    @property
    def energy_fn(self) -> nn.Module:
        """The evaluation model: the EMA (Polyak) copy when the config uses one, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def particles(self) -> Tensor:
        """Current particles / negatives [n, d] (detached)."""
        return self.state.position.detach()

    @property
    def log_weights(self) -> Tensor | None:
        """The log-weights [n] of a weighted strategy (pd-weighted, jarzynski), else None."""
        return self.state.log_weight.detach() if self.strategy.weighted else None

    def sample_base(self, n: int) -> Tensor:
        """``n`` draws [n, d] of the base: the Gaussian fitted to a data batch, the data's box, or N(0, I)."""
        mean, std, low, high = (t.to(self.device) for t in self._base)
        if self.config.init == "uniform":
            u = torch.rand((n, self.dim), generator=self.generator, device=self.device)
            return low + (high - low) * u
        z = torch.randn((n, self.dim), generator=self.generator, device=self.device)
        return z if self.config.init == "normal" else mean + std * z

    def log_base(self, x: Tensor) -> Tensor:
        """The base's log-density at ``x`` [n, d] -> [n] (:meth:`sample_base`'s law; NCE's noise)."""
        mean, std, low, high = (t.to(self.device) for t in self._base)
        laws = {
            "uniform": (Uniform, low, high),
            "normal": (Normal, 0 * mean, 0 * std + 1),
            "base": (Normal, mean, std),
        }
        law, a, b = laws[self.config.init]
        return law(a, b, validate_args=False).log_prob(x).sum(1)  # -inf outside a uniform box

    def _context(self, config: TrainConfig | None = None) -> Context:
        model = getattr(self, "model", None)  # the strategy builds its own model from a context without one
        return Context(model, config or self._local, self.generator, self.sample_base, self.log_base,
                       self.field_grid)  # fmt: skip

    def _batch(self) -> Tensor:
        cfg = self._local
        if self._train is None:
            return datasets.sample(cfg.dataset, cfg.batch_size, generator=self.data_generator).to(self.device)
        index = torch.randperm(self._train.shape[0], generator=self.data_generator)[: cfg.batch_size]
        batch = self._train[index]
        if self._levels is not None and cfg.dequantize:  # x (L-1)/L + U(0, 1/L), docs/method.md §6
            u = torch.rand(batch.shape, generator=self.data_generator)
            batch = batch * (self._levels - 1) / self._levels + u / self._levels
        return batch.to(self.device)

    def suggestion(self, what: str | None = None) -> str:
        """A concrete thing to try when a run diverges: ``what`` "lr", or by default the strategy's knobs."""
        c, knobs = self.config, self.strategy.knobs
        if what == "lr" or knobs == ("lr",):
            return f"lower lr (now {c.lr:g}), e.g. to {c.lr / 10:g}, or set grad_clip (now {c.grad_clip})"
        first = f"{knobs[0]} (now {getattr(c, knobs[0]):g})"
        if len(knobs) == 1:
            first += f", e.g. to {getattr(c, knobs[0]) / 10:g},"
        rest = "".join(f" or {k} (now {getattr(c, k):g})," for k in knobs[1:])
        return f"reduce {first}{rest} or lower lr (now {c.lr:g})"

    @contextlib.contextmanager
    def _guard(self):
        """Name this iteration and the config fields to change in a divergence raised by samplers or flows."""
        try:
            yield
        except DivergenceError as err:
            if err.suggestion in (self.suggestion(), self.suggestion("lr")):  # from _check: its own advice
                raise
            raise DivergenceError(err.quantity, self.iteration, self.suggestion()) from err  # config fields

    def _check(self, quantity: str, x: Tensor, what: str | None = None, bound: float | None = None) -> None:
        """Raise DivergenceError naming ``quantity`` when ``x`` holds NaN/Inf or |x| > ``bound`` (default
        config.bound), with the suggestion for ``what`` (:meth:`suggestion`)."""
        bound = bound or self.config.bound
        check_finite_state(quantity, x, self.iteration, bound=bound, suggestion=self.suggestion(what))

    def step(self) -> dict[str, float]:
        """One iteration: negatives, loss and update, transport; records the curves. Returns
        ``{loss, lr, n_grad}``. Raises DivergenceError (iteration + suggestion) on NaN/Inf or escapes."""
        cfg, it = self.config, self.iteration
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        lr = learning_rate(cfg, it)
        batch = self._batch()
        ctx = self._context()
        with self._guard():
            negatives = self.strategy.negatives(self.state, self.aux, ctx)
            state, aux, n_grad = negatives.state, negatives.aux, negatives.n_grad
            if negatives.x is not None:
                self._check("negative samples", negatives.x)
            if self.strategy.samples:
                dt = self._measure_lag(batch, negatives.x, negatives.weights)
                t_wall, t_cpu = t_wall + dt[0], t_cpu + dt[1]
            params_old: dict[str, Tensor] = {}
            if self.strategy.update is not None:
                aux, loss = self.strategy.update(state, aux, batch, negatives, ctx)
                loss = float(loss)
            else:
                if self.strategy.transport is not None:
                    params_old = {k: v.detach().clone() for k, v in self.model.named_parameters()}
                loss = self._adam_step(batch, negatives._replace(aux=aux), lr, ctx)
            if not math.isfinite(loss) or abs(loss) > cfg.loss_bound:
                raise DivergenceError("loss", it, self.suggestion("lr"), detail=f"loss {loss:.4g}, lr {lr:g}")
            if self.strategy.transport is not None:
                state, aux, n_move = self.strategy.transport(state, aux, params_old, ctx)
                n_grad += n_move
                self._check("particle positions", state.position)
        self.state, self.aux, self.iteration = state, aux, it + 1
        c, m = self.history.curves, self.history.meta

        def last(key):
            return c[key][-1] if c.get(key) else m[f"init_{key}"]

        wall = last("wall_time") + time.perf_counter() - t_wall
        cpu, total = last("cpu_time") + time.process_time() - t_cpu, last("n_grad") + n_grad
        self.history.add(step=self.iteration, loss=loss, lr=lr, n_grad=total, wall_time=wall)
        self.history.add(cpu_time=cpu)
        self._record()
        return {"loss": loss, "lr": lr, "n_grad": float(n_grad)}

    def _measure_lag(self, batch: Tensor, neg: Tensor, weights: Tensor | None) -> tuple[float, float]:
        """The lag meter, before the iteration's evaluation (2-D, one process): how far the negatives sit from
        the model they are about to train (``metrics.lag``), the error and cosine of the gradient they give
        (``metrics.gradient_error``) and, on a dataset with mode centres, the model's and the negatives' mode
        weights [k], kept for the frame. Returns the (wall, cpu) seconds it took, which count
        as evaluation time (meta ``lag_cpu_time`` too), not training time."""
        cfg, it = self.config, self.iteration
        if not cfg.eval_every or (it + 1) % cfg.eval_every or self.grid is None or self.world > 1:
            return 0.0, 0.0
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        grid = Grid(cfg.grid_low, cfg.grid_high, min(cfg.grid_size, LAG_GRID))
        energy = grid.energy(lambda x: self.model(x.to(self.device)))
        g = metrics.gradient_error(self.model, batch, neg, grid, weights, energy)
        self._lag = dict(lag=metrics.lag(neg, energy, grid, weights), grad_error=g.error,
                         grad_cosine=g.cosine, grad_error_floor=g.floor)  # fmt: skip
        centres = datasets.MODE_CENTRES.get(cfg.dataset) if self._toy else None
        if centres is not None:  # where the negatives sit against where the model's mass is, mode by mode
            self._lag["model_mode_weights"] = metrics.grid_mode_weights(grid, energy, centres)
            self._lag["negative_mode_weights"] = metrics.mode_weights(neg, centres, weights)
        dt = time.perf_counter() - t_wall, time.process_time() - t_cpu
        for key, value in zip(("eval_wall_time", "eval_cpu_time", "lag_cpu_time"), (*dt, dt[1])):
            self.history.meta[key] = self.history.meta.get(key, 0.0) + value
        return dt

    def _adam_step(self, batch: Tensor, negatives: Negatives, lr: float, ctx: Context) -> float:
        """One Adam step on the strategy's loss, by default the contrastive loss of the weighted negatives
        (+ energy_reg · mean E²), clipped, then the EMA update. Returns the loss (without the regulariser)."""
        cfg, b = self.config, batch.shape[0]
        if self.strategy.loss is not None:
            loss = objective = self.strategy.loss(self._loss_model, batch, negatives, negatives.aux, ctx)
        else:
            energies = distributed.collective(self._loss_model, torch.cat([batch, negatives.x.detach()]))
            self._check("energies", energies, "lr", bound=math.inf)
            loss = contrastive_loss(energies[:b], energies[b:], negatives.weights)
            objective = loss + cfg.energy_reg * (energies[:b].square().mean() + energies[b:].square().mean())
        self.optimizer.zero_grad(set_to_none=True)
        distributed.collective(objective.backward)  # on N > 1 ranks DDP averages the gradients here
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
        if not bool(torch.isfinite(norm)):
            raise DivergenceError("parameter gradients", self.iteration, self.suggestion("lr"))
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema_model is not None:
            # Polyak average with a short warm-up, so early evaluations are not stuck at the initial model
            decay = min(cfg.ema, (1.0 + self.iteration) / (10.0 + self.iteration))
            with torch.no_grad():
                for p_ema, p in zip(self.ema_model.parameters(), self.model.parameters()):
                    p_ema.lerp_(p.detach(), 1.0 - decay)
        return distributed.mean(float(loss.detach()))

    def _record(self) -> None:
        """Evaluate and/or snapshot when this iteration is due; one History frame (times excluded)."""
        cfg, it = self.config, self.iteration
        values = {}
        if cfg.eval_every and it % cfg.eval_every == 0:
            values.update(self.evaluate(record=False), **self._lag)
            self._lag = {}
        if cfg.snapshot_every and it % cfg.snapshot_every == 0:
            values["position"] = self.particles.cpu().clone()
        if values:
            self.history.record(it, **values)

    def evaluate(self, record: bool = True) -> dict[str, Any]:
        """Held-out exact log-likelihood of ``energy_fn`` on the grid (d = 2): ``-mean E(x) - log Z``;
        MMD² between MMD_POINTS particles and held-out points (Gaussian kernels of widths (0.1, 0.3, 1, 3) ·
        sqrt(d/2)); mode-weight spreads (max - min share) of the particles and of the model's density where
        ``datasets.MODE_CENTRES`` has centres; ESS of weighted particles; the share of the model's mass outside
        the grid's box (``outside_mass``, 3 % of the cost; warned of once per run above 1 %, after iteration 0,
        where the model is the base fitted to the data). Appended as a History frame."""
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        x, m = distributed.gather(self.particles), self.history.meta
        keys = ("log_likelihood", "mode_weight_spread", "model_mode_weight_spread", "ess", "mmd2")
        out: dict[str, Any] = dict.fromkeys(keys)
        out["entropy_bound"] = m["entropy_bound"]
        with torch.no_grad():
            if self.grid is not None:
                points = torch.cat([self.grid.points.to(self.device), self._eval])
                e = torch.cat([self.energy_fn(c) for c in points.split(EVAL_CHUNK)]).double().cpu()
                self._check("evaluation energies", e, "lr", bound=math.inf)
                g = self.grid.size
                energy, e_eval = e[: g * g].reshape(g, g), e[g * g :]
                out["log_likelihood"] = float(-e_eval.mean()) - self.grid.log_z(energy)
                on_device = lambda z: self.energy_fn(z.to(self.device)).cpu()  # noqa: E731
                quiet = m.get("outside_mass_warned") or self.iteration == 0  # the untrained base: not news
                with warnings.catch_warnings():
                    if quiet:  # said once per run; every frame has the share
                        warnings.simplefilter("ignore")
                    out["outside_mass"] = metrics.check_grid_holds(self.grid, None, on_device)
                said = not quiet and out["outside_mass"] > 0.01
                m["outside_mass_warned"] = bool(m.get("outside_mass_warned")) or said
                centres = datasets.MODE_CENTRES.get(self.config.dataset) if self._toy else None
                if centres is not None:
                    if self.strategy.samples:
                        weights = metrics.mode_weights(x.cpu(), centres)
                        out["mode_weight_spread"] = metrics.mode_weight_spread(weights)
                    model_weights = metrics.grid_mode_weights(self.grid, energy, centres)
                    out["model_mode_weight_spread"] = metrics.mode_weight_spread(model_weights)
                if self.config.snapshot_every and self.iteration % self.config.snapshot_every == 0:
                    out["energy"] = energy.float()
            n, scale = min(x.shape[0], self._eval.shape[0], MMD_POINTS), math.sqrt(self.dim / 2.0)
            widths = tuple(b * scale for b in (0.1, 0.3, 1.0, 3.0))
            if self.strategy.samples:  # of particles that are samples of the model, else None
                out["mmd2"] = metrics.mmd2(x[:n].cpu(), self._eval[:n].cpu(), bandwidths=widths)
            if self.log_weights is not None:
                out["ess"] = metrics.ess(self.log_weights)
        curves = self.history.curves
        for key in ("wall_time", "cpu_time"):
            out[key] = curves[key][-1] if curves.get(key) else m[f"init_{key}"]
        m["eval_wall_time"] = m.get("eval_wall_time", 0.0) + time.perf_counter() - t_wall
        m["eval_cpu_time"] = m.get("eval_cpu_time", 0.0) + time.process_time() - t_cpu
        if record:
            self.history.record(self.iteration, **out)
        return out

    def loop_time(self) -> float:
        """Cumulative wall-clock seconds of the loop (initial particles included, evaluations excluded)."""
        wall = self.history.curves.get("wall_time")
        return wall[-1] if wall else self.history.meta["init_wall_time"]

    def run(
        self,
        n_iters: int | None = None,
        progress: bool = True,
        callback: Any = None,
        log_dir: str | Path | None = None,
        tensorboard: bool = False,
    ) -> samplers.History:
        """Run ``n_iters`` more iterations (default: up to ``config.n_iters`` in total); stop early once the
        loop time reaches ``config.time_budget`` or ``callback(trainer, info)`` returns False. Holds the
        checkpoint lock and writes ``config.checkpoint_path`` every ``checkpoint_every`` iterations and at
        the end. With ``log_dir``, each evaluation appends a row to ``log_dir/metrics.csv`` (and, with
        ``tensorboard``, TensorBoard scalars; :class:`pdviz.logs.MetricsLog`). The progress bar shows the
        latest loss and held-out log-likelihood. Returns the History."""
        cfg, frames = self.config, self.history.frames
        target = cfg.n_iters if n_iters is None else self.iteration + n_iters
        path = cfg.checkpoint_path
        total = max(0, target - self.iteration)
        bar = tqdm(total=total, disable=not progress, desc=cfg.strategy, leave=False)
        logged = log_dir is not None and self.rank == 0
        log = logs.MetricsLog(log_dir, frames, tensorboard, self.iteration) if logged else None
        saved_at, ll = None, next((f["log_likelihood"] for f in frames[::-1] if "log_likelihood" in f), None)
        with checkpoint.locked(path) if path and self.rank == 0 else contextlib.nullcontext(), bar:
            while self.iteration < target:
                if cfg.time_budget is not None and distributed.agree(self.loop_time() >= cfg.time_budget):
                    break
                n_frames = len(frames)
                info = self.step()
                if len(frames) > n_frames and "log_likelihood" in frames[-1]:
                    ll = frames[-1]["log_likelihood"]
                    if log is not None:
                        log.add(frames[-1])
                bar.update(1)
                if progress:
                    text = f"loss {info['loss']:.3g}, log-lik {'-' if ll is None else f'{ll:.3f}'}"
                    bar.set_postfix_str(text, refresh=False)
                if path and cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                    self._save_checkpoint(path)
                    saved_at = self.iteration
                if callback is not None and distributed.agree(callback(self, info) is False):
                    break
            if path and saved_at != self.iteration:
                self._save_checkpoint(path)
        if log is not None:
            log.close()
        return self.history

    def _save_checkpoint(self, path: str | Path) -> Path:
        payload = self.state_dict()  # on every rank, since it gathers the particles; rank 0 writes
        return checkpoint.save_checkpoint(path, payload) if self.rank == 0 else Path(path)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: tensors, numbers, strings, lists and dicts only."""

        def cpu(module):
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        gather, buffer = distributed.gather, samplers.ReplayBuffer  # the particles of every rank, in order
        aux = {k: {**v.state_dict(), "positions": gather(v.positions).cpu()} if isinstance(v, buffer) else v.detach().cpu()
               for k, v in self.aux.items()}  # fmt: skip
        h, gens = self.history, (self.generator, self.data_generator)
        ema, opt = self.ema_model and cpu(self.ema_model), self.optimizer and self.optimizer.state_dict()
        return dict(
            kind=KIND, config=self.config.to_dict(), iteration=self.iteration, model=cpu(self.model), ema=ema,
            optimizer=opt, state={k: v if v is None else gather(v.detach()).cpu() for k, v in self.state._asdict().items()},
            aux=aux,
            generator=samplers.generator_state(gens[0]), data_generator=samplers.generator_state(gens[1]),
            history={"frames": h.frames, "curves": h.curves, "meta": h.meta}, data=self._data_info(),
        )  # fmt: skip

    def _data_info(self) -> dict[str, Any]:
        """What identifies the training data: the dataset's name, or the size and sum of an image dataset, and
        for custom data also a SHA-256 of its bytes (the same points in another order are other batches)."""
        info: dict[str, Any] = {"dataset": self.config.dataset, "toy": self._toy, "dim": self.dim}
        if self._train is not None:
            info.update(n_train=int(self._train.shape[0]), sum=float(self._train.double().sum()))
        if self.config.dataset == "custom":
            info["sha256"] = hashlib.sha256(self._train.cpu().numpy().tobytes()).hexdigest()
        return info

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically, under the path's lock (see :mod:`pdviz.checkpoint`)."""
        with checkpoint.locked(path) if self.rank == 0 else contextlib.nullcontext():
            return self._save_checkpoint(path)

    def _load_payload(self, payload: dict[str, Any], path: str | Path) -> Trainer:
        where = f"checkpoint {str(path)!r}"
        if payload.get("kind") != KIND:
            raise CheckpointError(f"{where} is not a Trainer checkpoint (kind {payload.get('kind')!r})")
        if payload.get("data") != self._data_info():
            here = f"({payload.get('data')}, here {self._data_info()})"
            raise CheckpointError(f"{where} was trained on other data {here}; pass the same data to load it")
        try:
            self.model.load_state_dict(payload["model"])
            if self.ema_model is not None:
                self.ema_model.load_state_dict(payload["ema"])
            if self.optimizer is not None:
                self.optimizer.load_state_dict(payload["optimizer"])
            fresh = self.state._asdict()
            saved = {k: v if v is None else distributed.shard(v) for k, v in payload["state"].items()}
            for key, value in fresh.items():  # a cache may be absent (None): positions never evaluated
                if saved[key] is not None and saved[key].shape != value.shape:
                    shapes = f"{list(saved[key].shape)}, expected {list(value.shape)}"
                    raise ValueError(f"state.{key} has shape {shapes}")
            restored = {k: saved[k] if saved[k] is None else saved[k].to(self.device) for k in fresh}
            self.state = type(self.state)(**restored)
            for key, value in self.aux.items():
                saved = payload["aux"][key]  # this rank's share of a replay buffer, or pd-gamma's ΔE
                if isinstance(value, samplers.ReplayBuffer):
                    value.load_state_dict({**saved, "positions": distributed.shard(saved["positions"])})
                else:  # in place: the optimiser holds a trainable one (NCE's log Z)
                    with torch.no_grad():
                        value.copy_(saved.to(self.device))
            samplers.set_generator_state(self.generator, payload["generator"])
            samplers.set_generator_state(self.data_generator, payload["data_generator"])
            self.iteration = int(payload["iteration"])
            if self.world > 1:  # the saved streams are rank 0's: every rank starts new ones of its own
                self.data_generator.manual_seed((self._local.seed + self.iteration) % 2**63)
                self.generator.manual_seed((self._local.seed + self.iteration + 1) % 2**63)
            self.history = samplers.History(**payload["history"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{where} does not fit this run: {err}") from None
        return self

    def resume(self, path: str | Path) -> Trainer:
        """Load a checkpoint into this trainer; its configuration must match (RUN_KEYS may differ)."""
        expected = self.config.to_dict()
        payload = checkpoint.load_checkpoint(path, expected_config=expected, ignore_config_keys=RUN_KEYS)
        return self._load_payload(payload, path)

    @classmethod
    def load(
        cls, path: str | Path, data: Tensor | None = None, model: nn.Module | None = None, **overrides: Any
    ) -> Trainer:
        """A trainer restored from a checkpoint, ready to continue bit for bit; ``overrides`` may change
        RUN_KEYS only; ``data`` and ``model`` must be given again if the run used them. A checkpoint is data:
        its own ``checkpoint_path`` is dropped, so only the caller chooses where later writes go."""
        bad = sorted(set(overrides) - set(RUN_KEYS))
        if bad:
            msg = f"cannot change {', '.join(bad)} when loading a checkpoint; only {', '.join(RUN_KEYS)} may differ"
            raise InvalidArgumentError(msg)
        payload = checkpoint.load_checkpoint(path)
        try:
            config = TrainConfig.from_dict({**payload["config"], "checkpoint_path": None, **overrides})
        except (InvalidArgumentError, TypeError, KeyError) as err:
            raise CheckpointError(f"checkpoint {str(path)!r} holds an invalid configuration: {err}") from None
        return cls(config, data, model, _initialise=False)._load_payload(payload, path)


def train(
    config: TrainConfig | None = None, *, progress: bool = True, threads: int | None = 1, **overrides: Any
) -> Trainer:
    """Build a config (``make_config(**overrides)``, or ``config`` with overrides), run it, return the Trainer.

    ``threads``: torch CPU threads while it runs (then restored); 1 by default, as the CLI and notebooks: the
    2-D models are small and extra threads spin on a busy machine (README quickstart on a loaded 2-core
    machine: 3 min 43 s with torch's default, 19 s with one); None keeps torch's setting."""
    if config is None:
        config = make_config(**overrides)
    elif overrides:
        _check_keys(overrides)
        config = dataclasses.replace(config, **overrides)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        trainer = Trainer(config)
        trainer.run(progress=progress)
    finally:
        torch.set_num_threads(before)
    return trainer
