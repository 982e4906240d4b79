"""A training process killed with SIGKILL resumes from its last periodic checkpoint, in a new process, to
exactly the tensors of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdviz import checkpoint as ckpt

ITERS = 600
EVERY = 20
SETTINGS = dict(
    hidden=16,
    n_particles=64,
    batch_size=64,
    n_init_steps=5,
    n_corrections=2,
    eval_every=200,
    n_eval=200,
    grid_size=32,
    snapshot_every=0,
    ema=0.9,
)


def _command(checkpoint):
    config = dict(SETTINGS, strategy="pd-alpha", n_iters=ITERS, seed=4, checkpoint_every=EVERY)
    script = (
        "from pdviz import training\n"
        f"training.train(training.make_config('fast', **{config!r}, checkpoint_path={str(checkpoint)!r}), "
        "progress=False)"
    )
    return [sys.executable, "-c", script]


def _env():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    killed_ck, full_ck = tmp_path / "killed.pt", tmp_path / "full.pt"
    env = _env()
    proc = subprocess.Popen(_command(killed_ck), env=env, stderr=subprocess.PIPE)
    # the uninterrupted reference runs meanwhile, in its own process
    ref = subprocess.Popen(_command(full_ck), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not killed_ck.exists():  # the first periodic checkpoint
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = ckpt.load_checkpoint(killed_ck)["iteration"]  # a complete file, whatever the kill hit
    assert 0 < stopped_at < ITERS and stopped_at % EVERY == 0

    resumed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from pdviz import training\ntraining.Trainer.load({str(killed_ck)!r}, checkpoint_path={str(killed_ck)!r}).run(progress=False)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ref.wait(timeout=120) == 0, ref.stderr.read().decode()
    ref.stderr.close()

    a, b = ckpt.load_checkpoint(killed_ck), ckpt.load_checkpoint(full_ck)
    assert a["iteration"] == b["iteration"] == ITERS
    for group in ("model", "ema", "state"):
        for key in b[group]:
            assert torch.equal(a[group][key], b[group][key]), f"{group}.{key}"
    for key, state in b["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(a["optimizer"]["state"][key][name], value), f"optimizer {key}.{name}"
    assert torch.equal(a["generator"], b["generator"]) and torch.equal(
        a["data_generator"], b["data_generator"]
    )
    for key in ("loss", "n_grad", "lr"):
        assert a["history"]["curves"][key] == b["history"]["curves"][key], key
    lls = [[f["log_likelihood"] for f in h["history"]["frames"] if "log_likelihood" in f] for h in (a, b)]
    assert lls[0] == lls[1] and len(lls[0]) == ITERS // 200 + 1
