"""pdviz.checkpoint: atomic writes, weights-only loads, and every kind of bad file -> CheckpointError."""

import os
import pickle
import subprocess
import sys

import pytest
import torch

from pdviz import checkpoint as ckpt
from pdviz.errors import CheckpointError, InvalidArgumentError


def _payload():
    gen = torch.Generator().manual_seed(3)
    return {
        "iteration": 7,
        "config": {"lr": 1e-3, "strategy": "pcd", "betas": [0.0, 0.999]},
        "model": {"w": torch.randn(4, 3, generator=gen), "b": torch.zeros(4)},
        "history": {"loss": [0.5, 0.25], "evals": [{"iteration": 5, "ll": None}]},
        "generator": ckpt.generator_state(gen),
        "flags": [True, 2, "x", None],
        "optim": {"state": {0: {"step": torch.tensor(3.0)}}},
    }


def test_round_trip_and_no_temp_files(tmp_path):
    path = tmp_path / "run.pt"
    payload = _payload()
    ckpt.save_checkpoint(path, payload)
    ckpt.save_checkpoint(path, payload)  # replacing an existing file works too
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]
    loaded = ckpt.load_checkpoint(path)
    assert loaded["iteration"] == 7
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert loaded["history"] == payload["history"]
    assert loaded["optim"]["state"][0]["step"].item() == 3.0
    g1, g2 = torch.Generator(), torch.Generator().manual_seed(3)
    torch.randn(4, 3, generator=g2)  # where _payload's generator stood when its state was taken
    ckpt.set_generator_state(g1, loaded["generator"])
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


def test_plain_torch_load_is_weights_only(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "a.pt", _payload())
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt.FORMAT and raw["version"] == ckpt.FORMAT_VERSION


def test_refuses_bad_payloads_and_places(tmp_path):
    with pytest.raises(InvalidArgumentError, match="reserved"):
        ckpt.save_checkpoint(tmp_path / "a.pt", {"version": 3})
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        ckpt.save_checkpoint(tmp_path / "nope" / "a.pt", {"x": 1})


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    ckpt.save_checkpoint(path, {"iteration": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"iteration": 2})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["iteration"] == 1
    assert os.listdir(tmp_path) == ["run.pt"]


def test_truncated_file(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "run.pt", _payload())
    data = path.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cannot be read"):
            ckpt.load_checkpoint(path)


def test_missing_file_and_foreign_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "none.pt")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pdviz checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps(object(), protocol=2))
    with pytest.raises(CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(tmp_path / "pickle.pt")


def _rewrite(path, change):
    raw = torch.load(path, weights_only=True)
    change(raw)
    torch.save(raw, path)


def test_wrong_version(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "run.pt", _payload())
    _rewrite(path, lambda raw: raw.update(version=99))
    with pytest.raises(CheckpointError, match="version 99"):
        ckpt.load_checkpoint(path)
    path = ckpt.save_checkpoint(tmp_path / "ok.pt", _payload())


def test_config_mismatch_and_missing_keys(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "run.pt", _payload())
    config = dict(_payload()["config"])
    ckpt.load_checkpoint(path, expected_config=config)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.001 vs expected 0.01"):
        ckpt.load_checkpoint(path, expected_config={**config, "lr": 1e-2})
    ckpt.load_checkpoint(path, expected_config={**config, "lr": 1e-2}, ignore_config_keys=("lr",))


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = ckpt.save_checkpoint(tmp_path / "run.pt", _payload())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_second_writer_is_refused_and_a_dead_one_releases(tmp_path):
    path = tmp_path / "run.pt"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pdviz import checkpoint as c\nwith c.locked({str(path)!r}):\n"
            "    print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match="another process"):
            with ckpt.locked(path):
                pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with ckpt.locked(path):  # the OS released the killed holder's lock
        ckpt.save_checkpoint(path, {"iteration": 1})


def test_bad_generator_state():
    with pytest.raises(CheckpointError, match="uint8"):
        ckpt.set_generator_state(torch.Generator(), torch.zeros(3))
    with pytest.raises(CheckpointError, match="generator"):
        ckpt.set_generator_state(torch.Generator(), torch.zeros(3, dtype=torch.uint8))
