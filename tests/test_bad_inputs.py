"""Bad input, one test per class: each ends in a pdviz error naming the value and the valid range (or a
warning with the numbers), raised at the edge before any work, never in a traceback from torch or numpy.

The command-line classes (signals, output paths, a full disk, resuming with other arguments) are in
``test_cli.py``; checkpoint locking and file modes in ``test_checkpoint.py``.
"""

import gzip
import math
import struct
import time

import pytest
import torch

from pdviz import (
    ais,
    checkpoint,
    datasets,
    energies,
    flows,
    grid,
    images,
    metrics,
    models,
    samplers,
    training,
)
from pdviz.errors import CheckpointError, DataError, DivergenceError, InvalidArgumentError, UnknownNameError

G = energies.get("gaussian")
HUGE = 10**12

SIZES = [
    (lambda: datasets.sample("8gaussians", HUGE, seed=0), "n must be an integer in [1, 1e+07]"),
    (lambda: grid.Grid(-5, 5, 10**6), "size must be an integer in [1, 4096]"),
    (lambda: grid.Grid().sample(G, HUGE), "n must be an integer in [1, 1e+07]"),
    (lambda: models.EBM(hidden=10**9), "hidden must be an integer in [1, 4096]"),
    (lambda: models.ConvEBM((1, 8, 8), channels=(10**7, 1, 1)), "channels must be 3 or 4 ints in [1, 4096]"),
    (lambda: samplers.run("ula", torch.zeros(3, 2), G, HUGE, step_size=0.1), "n_steps must be an integer in"),
    (lambda: samplers.run("ula", torch.zeros(10**5, 2), G, 10**6, step_size=0.1), "more than the 2.5e+08"),
    (lambda: samplers.ReplayBuffer(HUGE, lambda n, g: torch.zeros(n, 2)), "size must be an integer in"),
    (
        lambda: flows.track("translating_gaussian", "alpha", n_particles=HUGE),
        "n_particles must be an integer in",
    ),
    (lambda: metrics.kl_floor(G, HUGE), "n must be an integer in [1, 1e+07]"),
    (lambda: metrics.kl_to_grid(torch.zeros(3, 2), G, bins=10**6), "bins must be an integer in [1, 4096]"),
    (lambda: ais.ais_log_z(G, 100, n_chains=10**7), "more than the 2.5e+08"),
    (lambda: training.make_config(n_particles=HUGE), "n_particles must be an integer in [1, 1e+06]"),
    (lambda: training.make_config(buffer_size=HUGE), "buffer_size must be an integer in [1, 1e+07]"),
    (lambda: training.make_config(grid_size=10**5), "grid_size must be an integer in [4, 2000]"),
    (lambda: training.make_config(hidden=10**9), "hidden must be an integer in [1, 4096]"),
    (lambda: training.make_config(n_eval=HUGE), "n_eval must be an integer in [1, 1e+06]"),
]


@pytest.mark.parametrize("call, fragment", SIZES)
def test_every_size_is_bounded_before_allocation(call, fragment):
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as info:
        call()
    assert fragment in str(info.value)
    assert time.perf_counter() - t0 < 5  # refused at once, nothing allocated or run


@pytest.mark.parametrize(
    "call",
    [
        lambda: datasets.sample("8gaussians", 3, seed=-1),
        lambda: datasets.sample("8gaussians", 3, seed=2**63),
        lambda: samplers.make_generator(2**63),
        lambda: training.make_config(seed=2**63),
        lambda: training.make_config(seed=-1),
    ],
)
def test_seeds_are_0_to_2_63_minus_1(call):
    with pytest.raises(
        InvalidArgumentError, match=r"seed must be an int.* \[0, (2\*\*63 - 1|9.22337e\+18)\]"
    ):
        call()


def test_the_largest_seed_trains():
    cfg = training.make_config(
        seed=2**63 - 1,
        n_iters=1,
        hidden=8,
        n_particles=16,
        batch_size=16,
        n_init_steps=0,
        eval_every=0,
        n_eval=100,
    )
    training.Trainer(cfg).run(progress=False)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: training.make_config(step_size=math.nan), "step_size must be a number in"),
        (lambda: training.make_config(lr=-1.0), "lr must be a number in"),
        (
            lambda: samplers.run("ula", torch.zeros(3, 2), G, 5, step_size=-0.1),
            "step_size must be a number > 0",
        ),
        (lambda: metrics.log_likelihood(G, torch.tensor([[0.0, math.nan]])), "row 0"),
        (lambda: training.make_config(strategy="pd-delta"), "valid names: pcd, pd-alpha"),
        (lambda: energies.get("swirl"), "valid"),
        (lambda: datasets.sample("swirl", 3), "valid names: 2spirals"),
        (lambda: images.load("nope"), "valid names: digits, mnist"),
    ],
)
def test_numbers_and_names_name_the_valid_range(call, fragment):
    with pytest.raises((InvalidArgumentError, UnknownNameError)) as info:
        call()
    assert fragment in str(info.value)


def test_a_batch_larger_than_the_data_is_said_not_shrunk():
    cfg = training.make_config(dataset="custom", batch_size=100, n_particles=16, hidden=8, n_init_steps=0)
    with pytest.raises(InvalidArgumentError, match=r"batch_size 100 is larger than the data \(10 points\)"):
        training.Trainer(cfg, data=torch.randn(10, 2))


def test_metrics_that_cannot_be_right_are_refused_or_warned():
    far = torch.full(
        (10, 2), 20.0
    )  # the old code printed a log-likelihood of +2378 for a grid away from the data
    with pytest.raises(
        InvalidArgumentError, match=r"100.0% of the points lie outside the grid's box \[-5, 5\]"
    ):
        metrics.log_likelihood(energies.get("8gaussians"), far)
    with pytest.warns(UserWarning, match=r"% of the model's mass .* outermost cells"):
        metrics.log_likelihood(G, torch.zeros(10, 2), grid=grid.Grid(-2, 2, 80))
    cfg = training.make_config(dataset="custom", n_particles=16, batch_size=16, hidden=8, n_init_steps=0)
    with pytest.raises(InvalidArgumentError, match="the grid misses the data"):
        training.Trainer(cfg, data=torch.randn(100, 2) + 30.0)


def _tiny(**kw):
    base = dict(
        n_particles=32,
        batch_size=32,
        hidden=8,
        n_init_steps=2,
        n_steps=2,
        n_corrections=1,
        eval_every=0,
        snapshot_every=0,
        grid_size=16,
        field_grid_size=16,
        n_eval=64,
        buffer_size=64,
        lr_warmup=0,
        lr_schedule="constant",
        ema=0.0,
    )
    return training.make_config("fast", **{**base, **kw})


@pytest.mark.parametrize("strategy", ["pcd", "pd-alpha"])
def test_a_diverging_run_names_the_iteration_and_a_suggestion(strategy):
    tr = training.Trainer(_tiny(strategy=strategy, lr=1e6))
    with pytest.raises(DivergenceError) as info:
        tr.run(n_iters=30, progress=False)
    assert info.value.iteration == tr.iteration  # the failing iteration was not counted as done
    assert "lr (now 1e+06)" in info.value.suggestion
    assert all(math.isfinite(v) for v in tr.history.curves.get("loss", []))
    tr = training.Trainer(_tiny(strategy="pcd", bound=0.5))  # 8gaussians needs |x| up to ~4
    with pytest.raises(DivergenceError) as info:
        tr.run(n_iters=5, progress=False)
    assert info.value.iteration == 0 and "particle positions" in str(info.value) and info.value.suggestion


def test_checkpoints_are_data_checked_field_by_field(tmp_path):
    path = tmp_path / "run.pt"
    tr = training.Trainer(_tiny(n_iters=2, checkpoint_path=str(path)))
    tr.run(progress=False)
    payload = torch.load(path, weights_only=True)
    # nothing in a checkpoint decides where later writes go
    assert training.Trainer.load(path).config.checkpoint_path is None
    for field, value, fragment in [
        ("n_particles", 10**9, "n_particles must be an integer in"),
        ("strategy", "rm -rf", "unknown strategy"),
        ("hidden", "8", "hidden"),
    ]:
        bad = {**payload, "config": {**payload["config"], field: value}}
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=fragment):
            training.Trainer.load(tmp_path / "bad.pt")
    other = training.Trainer(_tiny(n_iters=2, lr=0.5))
    with pytest.raises(CheckpointError, match="lr"):
        other.resume(path)  # another configuration is refused, naming the differing key
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")


def _idx(path, shape, payload, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, len(shape)) + b"".join(struct.pack(">I", s) for s in shape)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def test_image_files_are_checked_and_inflated_only_as_far_as_declared(tmp_path):
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    _idx(bomb, (2, 4, 4), bytes(200_000_000))  # declares 32 bytes, inflates to 200 MB
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="bomb"):
        images.read_idx(bomb)
    assert time.perf_counter() - t0 < 2
    short = tmp_path / "short-idx3-ubyte.gz"
    _idx(short, (2, 4, 4), bytes(10))
    with pytest.raises(DataError, match="short"):
        images.read_idx(short)
