"""Carry a paper-budget run begun by pdviz 0.1 (a trainer checkpoint ``<strategy>-s<seed>.pt``) into a run
directory of this version (``<strategy>-s<seed>/checkpoint.pt``), so ``benchmarks/paper_runs.sh`` resumes
it with ``pdviz train --resume``: the model, Adam state, particles, replay buffer or PD-gamma's ΔE,
generators, iteration and evaluation history move over; the configuration is this version's paper preset
with the run's own settings (differences from the old one are printed). The continued trajectory is not
bit-identical to what 0.1 would have run, only the same method from the same state.
Run: python benchmarks/paper_runs_convert.py benchmarks/paper_runs/pcd-s0.pt ...
"""

import json
import sys
from pathlib import Path

import torch

from pdviz import samplers, training

OWN = ("strategy", "seed", "n_iters", "eval_every", "snapshot_every", "checkpoint_every", "replay_anneal")
CURVES = ("loss", "lr", "n_grad", "wall_time", "cpu_time")


def convert(path: Path) -> Path:
    old = torch.load(path, map_location="cpu", weights_only=True)
    run = path.with_suffix("")
    cfg = training.make_config(
        "paper", **{k: old["config"][k] for k in OWN}, checkpoint_path=str(run / "checkpoint.pt")
    )
    differ = {
        k: (v, getattr(cfg, k))
        for k, v in old["config"].items()
        if hasattr(cfg, k) and k not in ("checkpoint_path", "betas") and getattr(cfg, k) != v
    }
    print(f"{path.name}: iteration {old['iteration']}; settings that differ (old, new): {differ or 'none'}")
    tr = training.Trainer(
        training.make_config("paper", **{**{k: old["config"][k] for k in OWN}, "n_init_steps": 0})
    )
    tr.config = cfg
    tr.model.load_state_dict(old["model"])
    if tr.optimizer is not None:
        tr.optimizer.load_state_dict(old["optimizer"])
    st = old["strategy_state"]
    tr.state = samplers.init(st["position"], tr.model)
    if "buffer" in tr.aux:
        tr.aux["buffer"].load_state_dict(st["buffer"])
    if "delta" in tr.aux:
        tr.aux["delta"] = st["delta"]
    samplers.set_generator_state(tr.generator, old["generator"])
    samplers.set_generator_state(tr.data_generator, old["data_generator"])
    tr.iteration = old["iteration"]
    h = old["history"]
    tr.history = samplers.History(
        meta={**tr.history.meta, **{k: h[k] for k in h if k.startswith(("init_", "eval_"))}}
    )
    tr.history.curves = {"step": list(h["iteration"]), **{k: list(h[k]) for k in CURVES}}
    for e in h["evals"]:
        tr.history.record(
            e["iteration"], **{k: v for k, v in e.items() if k != "iteration" and v is not None}
        )
    run.mkdir(exist_ok=True)
    tr.save(run / "checkpoint.pt")
    saved = {k: v for k, v in cfg.to_dict().items() if k != "checkpoint_path"}
    (run / "config.json").write_text(json.dumps(saved, indent=1))
    return run


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"wrote {convert(Path(arg))}")
