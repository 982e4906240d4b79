#!/usr/bin/env bash
# The paper's 8gaussians runs at the paper's budget (docs/method.md §6: 10 000 iterations), one thread each,
# resumable: a run directory with a checkpoint continues from it. Usage (from the repository root):
#   nice -n 19 bash benchmarks/paper_runs.sh pcd:0 pd-beta:0 ...      (strategy:seed, in order)
# Each run is `pdviz train --out benchmarks/paper_runs/<strategy>-s<seed>` (checkpoint every 250
# iterations; held-out log-likelihood and mode-weight spreads every 50); benchmarks/paper_figure.py then
# writes the small weights-only files the notebooks and the README draw from.
set -euo pipefail
read -r -a PDVIZ <<< "${PDVIZ:-.venv/bin/pdviz}"
OUTDIR=${OUTDIR:-benchmarks/paper_runs}
for run in "$@"; do
  strategy=${run%%:*}; seed=${run##*:}
  out="$OUTDIR/$strategy-s$seed"
  args=(--preset paper --strategy "$strategy" --seed "$seed" --iters 10000 --checkpoint-every 250
        --set eval_every=50 --set snapshot_every=0 --out "$out" --quiet)
  # the scripts' replay baseline of the paper's figure anneals each chain's step from 0.1 to σ² = 0.01
  [ "$strategy" = replay ] && args+=(--set replay_anneal=linear)
  if [ -f "$out/checkpoint.pt" ]; then args+=(--resume); fi
  echo "$(date -u +%T) ${args[*]: -1} $out"
  "${PDVIZ[@]}" --threads 1 train "${args[@]}"
done
