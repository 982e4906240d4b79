"""Planted-bug check (issue 15): each mutation below must make at least one test of its files fail.

    python benchmarks/planted_bugs.py before=/tmp/pb-old after=/tmp/pb-new --json benchmarks/planted_bugs.json

Each LABEL=ROOT is a source tree (a git worktree: "before" = 1d540f4, the old library; "after" = the
rewrite). Per bug, the one ``old => new`` line whose old text occurs exactly once in one of its files is
applied (the old and new library spell the same code differently, hence a line per version); the named test
files then run (``pytest -x -q``, ``PYTHONPATH=ROOT``) and the file is restored. The unmutated test files
run first: a tree whose own tests fail proves nothing. Exit status 0 when every bug is caught in every tree.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# name @ files (the first that matches) @ test files, then one "old => new" line per version ("\n": newline)
TABLE = r"""
ULA drift sign (+ε/2 ∇E) @ pdviz/samplers.py @ samplers
  new_x = x - 0.5 * step_size * state.grad => new_x = x + 0.5 * step_size * state.grad
  x = state.position - 0.5 * step_size * state.grad => x = state.position + 0.5 * step_size * state.grad
ULA noise scale sqrt(ε) -> sqrt(2ε) @ pdviz/samplers.py @ samplers
  return step_size, math.sqrt(step_size) => return step_size, math.sqrt(2 * step_size)
  math.sqrt(step_size) if noise_scale is None else noise_scale\n    x = => math.sqrt(2 * step_size) if noise_scale is None else noise_scale\n    x =
MALA acceptance ratio sign (E(x') - E(x)) @ pdviz/samplers.py @ samplers
  log_alpha = energy - new_energy + => log_alpha = new_energy - energy +
  (log_u < energy - new_energy + => (log_u < new_energy - energy +
annealing end point (ε_k = ε + (σ² - ε) k/K, never σ²) @ pdviz/samplers.py @ samplers
  k / (n_steps - 1) for k in range(n_steps) => k / n_steps for k in range(n_steps)
replay re-initialisation fraction halved @ pdviz/samplers.py @ samplers
  expected = self.reinit_frac * n => expected = 0.5 * self.reinit_frac * n
PD-beta field sign (Δθ reversed) @ pdviz/flows.py @ flows_fields
  (params_new[k].detach() - params[k]).to( => (params[k] - params_new[k].detach()).to(
exact-field sign (-∇φ) @ pdviz/flows.py @ flows_fields
  return np.stack([dphi_dx, dphi_dy]) => return -np.stack([dphi_dx, dphi_dy])
  torch.from_numpy(np.stack([dphi_dx, dphi_dy], axis=-1)) => -torch.from_numpy(np.stack([dphi_dx, dphi_dy], axis=-1))
importance weights: log|det ∇T| sign @ pdviz/flows.py @ flows_step
  (state.energy - energy) + log_det => (state.energy - energy) - log_det
  state.energy - current.energy + log_det) => state.energy - current.energy - log_det)
ESS = (Σw)²/Σw instead of (Σw)²/Σw² @ pdviz/metrics.py @ metrics
  float(torch.logsumexp(2 * lw, 0)) => float(torch.logsumexp(lw, 0))
grid log Z without the cell area h² @ pdviz/grid.py @ grid
  dim=0)) + math.log(self.cell_area) => dim=0))
contrastive loss sign @ pdviz/training.py pdviz/strategies.py @ training
  return energy_data.mean() - energy_neg.mean()\n    return energy_data.mean() - (neg => return energy_neg.mean() - energy_data.mean()\n    return -energy_data.mean() + (neg
  return e_data.mean() - (e_neg.mean() if => return -e_data.mean() + (e_neg.mean() if
"""
BUGS = []  # (name, files, test files, [(old, new), ...])
for line in TABLE.strip().splitlines():
    if not line.startswith(" "):
        name, files, tests = (s.strip() for s in line.split("@"))
        BUGS.append((name, files.split(), [f"tests/test_{t}.py" for t in tests.split()], []))
    else:
        BUGS[-1][3].append(tuple(s.strip().replace("\\n", "\n") for s in line.split(" => ")))


def pytest(root: str, tests: list[str]) -> dict:
    env = dict(
        os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1"
    )
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.time()
    try:
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        return {"caught": None, "test": "timeout after 1200 s", "seconds": 1200}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, re.M)
    detail = failed[0] if failed else None if out.returncode == 0 else out.stdout[-300:]
    return {"caught": out.returncode != 0, "test": detail, "seconds": round(time.time() - start)}


def check(label: str, root: str, results: list[dict]) -> None:
    probe = [sys.executable, "-c", "import pdviz; print(pdviz.__file__)"]
    where = subprocess.run(
        probe, cwd=root, env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True
    )
    assert where.stdout.startswith(os.path.realpath(root)), f"pdviz resolves to {where.stdout!r}, not {root}"
    for tests in sorted({tuple(b[2]) for b in BUGS}):
        clean = pytest(root, list(tests))
        assert clean["caught"] is False, f"{label}: the unmutated {tests} fail: {clean}"
    for (name, files, tests, pairs), row in zip(BUGS, results, strict=True):
        texts = {f: (Path(root) / f).read_text(encoding="utf-8") for f in files if (Path(root) / f).exists()}
        found = [(f, text, pair) for f, text in texts.items() for pair in pairs if text.count(pair[0]) == 1]
        assert len(found) == 1, f"{label}: {len(found)} mutations of {name!r} match exactly once, not 1"
        file, source, (old, new) = found[0]
        try:
            (Path(root) / file).write_text(source.replace(old, new), encoding="utf-8")
            row[label] = {"file": file, "mutation": [old, new], **pytest(root, tests)}
        finally:
            (Path(root) / file).write_text(source, encoding="utf-8")
        print(label, name, {k: row[label][k] for k in ("caught", "test", "seconds")}, flush=True)


if __name__ == "__main__":
    out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    results = [{"bug": name, "tests": tests} for name, _, tests, _ in BUGS]
    for label, root in (a.split("=", 1) for a in sys.argv[1:] if "=" in a):
        check(label, root, results)
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
    sys.exit(0 if all(r[k]["caught"] for r in results for k in r if k not in ("bug", "tests")) else 1)
