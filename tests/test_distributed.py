"""Data-parallel training on gloo ranks (CPU): one step on 2 ranks equals one process, the loss curves of
1 and 2 ranks agree, the refusals, and a run whose rank is killed resumes on 1 and on 2 ranks."""

import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from pdviz import distributed, samplers, training
from pdviz.errors import InvalidArgumentError

TINY = {"hidden": 16, "n_particles": 64, "batch_size": 64, "n_init_steps": 5, "n_eval": 500,
        "grid_size": 40, "eval_every": 10, "snapshot_every": 0}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, size, port, fn, args):
    """One spawned gloo rank: torchrun's environment, one thread, then ``fn(rank, *args)``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    try:
        fn(rank, *args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _on_ranks(size, fn, *args):
    mp.start_processes(_rank_main, args=(size, _free_port(), fn, args), nprocs=size, start_method="spawn")


def _one_step(rank, ref_file, out_file):
    """Load the shared weights, batch and particles, take this rank's share, step once, save what moved."""
    ref = torch.load(ref_file, weights_only=True)
    tr = training.Trainer(training.make_config(**ref["config"]))
    tr.model.load_state_dict(ref["model"])
    tr.ema_model.load_state_dict(ref["model"])
    tr._batch = lambda: distributed.shard(ref["batch"])
    tr.state = samplers.init(distributed.shard(ref["particles"]), tr.model)
    ddp = isinstance(tr._loss_model, torch.nn.parallel.DistributedDataParallel)
    assert ddp == (distributed.world()[1] > 1)  # the loss runs through PyTorch's DDP on several ranks
    info = tr.step()
    moved = {
        "model": tr.model.state_dict(),
        "particles": distributed.gather(tr.particles),
        "loss": info["loss"],
    }
    if rank == 0:
        torch.save(moved, out_file)


def test_one_step_on_two_ranks_equals_one_process(tmp_path):
    torch.set_num_threads(1)
    config = {**TINY, "strategy": "pd-beta", "n_corrections": 0, "lr_warmup": 0}  # no noise: exact
    tr = training.Trainer(training.make_config(**config))
    batch = tr._batch()
    ref = {"config": config, "model": tr.model.state_dict(), "batch": batch, "particles": tr.particles}
    torch.save(ref, tmp_path / "ref.pt")
    _one_step(0, tmp_path / "ref.pt", tmp_path / "one.pt")
    _on_ranks(2, _one_step, tmp_path / "ref.pt", tmp_path / "two.pt")
    one, two = (torch.load(tmp_path / f, weights_only=True) for f in ("one.pt", "two.pt"))
    assert any((one["model"][k] - ref["model"][k]).abs().max() > 1e-5 for k in one["model"])  # it moved
    for k in one["model"]:
        torch.testing.assert_close(two["model"][k], one["model"][k], rtol=0, atol=1e-6)
    assert (one["particles"] - ref["particles"]).abs().max() > 1e-5  # PD-beta moved the particles
    torch.testing.assert_close(two["particles"], one["particles"], rtol=0, atol=1e-6)
    assert abs(two["loss"] - one["loss"]) < 1e-6


def _losses(rank, overrides, out_file):
    tr = training.Trainer(training.make_config(**overrides))
    tr.run(progress=False)
    if rank == 0:
        torch.save(torch.tensor(tr.history.curves["loss"]), out_file)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {**TINY, "dataset": "8gaussians", "strategy": "pcd", "n_iters": 50},
        {
            "preset": "digits",
            "n_iters": 5,
            "n_init_steps": 10,
            "n_steps": 5,
            "n_corrections": 5,
            "n_eval": 64,
        },
    ],
    ids=["toy-50", "digits-5"],
)
def test_loss_curves_of_one_and_two_ranks_agree(tmp_path, overrides):
    """The mean loss of a 2-rank run lies within 3 standard errors of those of 1-process runs: the
    runs draw other batches and particles, so the error is the spread between runs (4 seeds), not the
    noise along one curve."""
    torch.set_num_threads(1)
    overrides = {"preset": "fast", **overrides}
    singles = []
    for seed in range(4):
        _losses(0, {**overrides, "seed": seed}, tmp_path / "one.pt")
        singles.append(float(torch.load(tmp_path / "one.pt", weights_only=True).mean()))
    _on_ranks(2, _losses, overrides, tmp_path / "two.pt")
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two.shape == (overrides["n_iters"],) and torch.isfinite(two).all()
    se = statistics.stdev(singles) * math.sqrt(1 + 1 / len(singles))
    assert abs(float(two.mean()) - statistics.fmean(singles)) <= 3 * se, (float(two.mean()), singles)


def test_strategies_and_sizes_that_do_not_split_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group is joined
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(
        InvalidArgumentError, match="'pd-gamma' updates its grid energy without the optimiser"
    ):
        training.Trainer(training.make_config(**TINY, strategy="pd-gamma"))
    with pytest.raises(
        InvalidArgumentError, match="batch_size must be divisible by the world size 2, got 63"
    ):
        training.Trainer(training.make_config(**{**TINY, "batch_size": 63}))
    assert not torch.distributed.is_initialized()


def test_one_process_does_not_communicate():
    assert distributed.world() == (0, 1) and not torch.distributed.is_initialized()
    assert distributed.rank_seed(7, 0) == 7 and distributed.rank_seed(7, 1) != 7
    x = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather(x) is x and distributed.shard(x) is x and distributed.mean(2.5) == 2.5


def _pdviz(run, iters, ranks, port):
    """``pdviz train`` on ``ranks`` torchrun ranks (1: no torchrun) with a checkpoint every 5 iterations."""
    args = ["--threads", "1", "train", "--out", str(run), "--strategy", "replay", "--iters", str(iters),
            "--checkpoint-every", "5", "--quiet", *(f"--set={k}={v}" for k, v in TINY.items())]  # fmt: skip
    if (run / "checkpoint.pt").exists():
        args.append("--resume")
    launch = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
              "--master-addr", "127.0.0.1", "--master-port", str(port), "-m"]  # fmt: skip
    cmd = [sys.executable, *(launch if ranks > 1 else ["-m"]), "pdviz", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc, ckpt, after_ns=0):
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns > after_ns:
            return
        time.sleep(0.1)
    raise AssertionError(proc.communicate())


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_saves_and_a_killed_rank_stops_the_run_which_resumes_on_one_and_two_ranks(tmp_path):
    psutil = pytest.importorskip("psutil")
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    proc = _pdviz(run, 100_000, 2, _free_port())
    _wait_for_checkpoint(proc, ckpt)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to the ranks: they finish the iteration and save
    out, err = proc.communicate(timeout=120)
    assert "pdviz train: SIGTERM at iteration" in err, err[-3000:]
    saved = torch.load(ckpt, weights_only=True)
    assert f"SIGTERM at iteration {saved['iteration']};" in err
    assert saved["state"]["position"].shape == (TINY["n_particles"], 2)  # both ranks' particles
    proc = _pdviz(run, 100_000, 2, _free_port())
    _wait_for_checkpoint(proc, ckpt, ckpt.stat().st_mtime_ns)
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert len(ranks) == 1
    ranks[0].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "lost contact with the other ranks" in err or "exitcode  : -9" in err, err[-3000:]
    reached = torch.load(ckpt, weights_only=True)["iteration"]
    assert reached > saved["iteration"]
    for ranks, more in ((1, 5), (2, 10)):
        proc = _pdviz(run, reached + more, ranks, _free_port())
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        assert torch.load(ckpt, weights_only=True)["iteration"] == reached + more
        assert torch.load(ckpt, weights_only=True)["state"]["position"].shape == (TINY["n_particles"], 2)
