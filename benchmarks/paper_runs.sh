#!/usr/bin/env bash
# The paper's 8gaussians runs at the paper's budget (method.md §3: 10 000 iterations), one thread each,
# resumable: a run whose checkpoint exists continues from it. Usage (from the repository root):
#   nice -n 19 bash benchmarks/paper_runs.sh pcd:0 pd-beta:0 ...      (strategy:seed, in order)
# Writes benchmarks/paper_runs/<strategy>-s<seed>.pt (trainer checkpoint, every 250 iterations) and .json
# (the history: held-out log-likelihood and mode-weight spreads every 50 iterations).
set -euo pipefail
read -r -a PDVIZ <<< "${PDVIZ:-.venv/bin/pdviz}"
OUTDIR=${OUTDIR:-benchmarks/paper_runs}
mkdir -p "$OUTDIR"
for run in "$@"; do
  strategy=${run%%:*}; seed=${run##*:}
  name="$OUTDIR/$strategy-s$seed"
  extra=()
  # the scripts' replay baseline of the paper's figure anneals each chain's step from 0.1 to σ² = 0.01
  [ "$strategy" = replay ] && extra=(--set replay_anneal=linear)
  common=(--iters 10000 --checkpoint-every 250 --out "$name.json" --quiet)
  if [ -f "$name.pt" ]; then
    echo "$(date -u +%T) resume $name"
    "${PDVIZ[@]}" --threads 1 train --resume "$name.pt" "${common[@]}"
  else
    echo "$(date -u +%T) start $name"
    "${PDVIZ[@]}" --threads 1 train --preset paper --strategy "$strategy" --seed "$seed" \
      --checkpoint "$name.pt" --set eval_every=50 --set snapshot_every=1000 "${extra[@]}" "${common[@]}"
  fi
done
