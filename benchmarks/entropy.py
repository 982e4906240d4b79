"""Differential entropies (nats) of the 8 toy datasets: the data-entropy bound of every log-likelihood plot.

No model's expected held-out log-likelihood exceeds -H(data). Exact where a closed form exists
(checkerboard: uniform on area 32; rings: radial quadrature of the blurred circles; 8gaussians: quadrature,
in pdviz.datasets), else the Kozachenko-Leonenko k-nearest-neighbour estimate on large samples, with the
spread over repeats as its error bar (the bias at this size, checked on 8gaussians and rings where the
answer is known, is printed beside). Prints a line per dataset; the numbers go into ``pdviz.datasets.ENTROPY``
and the table of RESULTS.md by hand. Run (from the repository root)::

    .venv/bin/python benchmarks/entropy.py              # 3 repeats of 200,000 samples, as ENTROPY was made
    .venv/bin/python benchmarks/entropy.py --quick      # 2 repeats of 3,000 samples (the test runs it)
"""

import argparse
import math

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from pdviz import datasets


def knn_entropy(x: np.ndarray, k: int = 5) -> float:
    """Kozachenko-Leonenko: H ≈ ψ(n) - ψ(k) + log(π) + 2 mean log ε_k (2-D, Euclidean balls of area π ε²)."""
    dist, _ = cKDTree(x).query(x, k + 1)
    return float(digamma(len(x)) - digamma(k) + math.log(math.pi) + 2 * np.log(dist[:, k]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="samples per estimate")
    parser.add_argument(
        "--repeats", type=int, default=3, help="estimates per dataset (their spread is shown)"
    )
    parser.add_argument("--quick", action="store_true", help="--n 3000 --repeats 2")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 3000, 2
    for name in sorted(datasets.DATASETS):
        h = [knn_entropy(datasets.sample(name, args.n, seed=s).double().numpy()) for s in range(args.repeats)]
        known, error = datasets.ENTROPY.get(name), datasets.ENTROPY_ERROR.get(name)
        how = (
            "exact" if error == 0.0 else f"shipped ± {error}"
        )  # the shipped ones are this script's estimates
        note = "" if known is None else f"  ({how} {known:.4f}: difference {np.mean(h) - known:+.4f})"
        print(f"{name:13s} {np.mean(h):.4f} ± {np.std(h, ddof=1):.4f}{note}")


if __name__ == "__main__":
    main()
