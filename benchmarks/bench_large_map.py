"""Node-sized work of a large map: the share of an iteration spent in the code-vector solve and the roughness.

Data: ``make_adk_path(N, snr=0.1, random_state=0)``, 64x64 unmasked float32 (cached with bench_fit.py),
N = 20000 (5000 with --quick). Fits ``KerDenSOM(side, side, annealing_steps=1, max_iter=5)`` for each map
side (default 30) and times, inside the fit, every inner iteration and its node-sized parts: the exact
code-vector solve (banded past 400 nodes) and the two roughness products (``trace(V.T P V)``, sparse ``P``).
Prints the median iteration, the median node-sized time and their ratio; writes
``results/bench_large_map[_quick].json``.

    python benchmarks/bench_large_map.py [--quick] [--sides 30 50]
"""

import argparse
import warnings

import _common
import numpy as np

import sklearn_kerdensom._training as training
from sklearn_kerdensom import KerDenSOM


def measure(X, side):
    """Median seconds of an iteration and of its node-sized work, over the iterations of a short fit."""
    with (
        _common.iteration_times() as iteration_times,
        _common.call_times(training, "solve_exactly") as solve_times,
        _common.call_times(training, "roughness") as roughness_times,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        KerDenSOM(side, side, annealing_steps=1, max_iter=5, random_state=0).fit(X)
    n_iter = len(iteration_times)
    # Each iteration computes the roughness twice (for the objective and for the width) and solves once.
    roughness = np.array(roughness_times[-2 * n_iter :]).reshape(n_iter, 2).sum(axis=1)
    node = np.array(solve_times[-n_iter:]) + roughness
    iterations = np.array(iteration_times)
    return {
        "iteration_seconds": float(np.median(iterations)),
        "node_seconds": float(np.median(node)),
        "node_share": float(np.median(node / iterations)),
        "n_iter": n_iter,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5000 images")
    parser.add_argument("--sides", type=int, nargs="+", default=[30])
    args = parser.parse_args()
    n_samples = 5000 if args.quick else 20000
    info = _common.machine_info()
    _common.print_header(f"bench_large_map: {n_samples} x 64^2 images", info)
    X, data_info = _common.load_adk_path(n_samples)
    results = {f"{side}x{side}": measure(X, side) for side in args.sides}
    _common.table(
        ["map", "s / iteration", "node-sized s", "node share"],
        [
            [name, run["iteration_seconds"], run["node_seconds"], run["node_share"]]
            for name, run in results.items()
        ],
        {1: ".3f", 2: ".3f", 3: ".3f"},
    )
    _common.write_json(
        "bench_large_map_quick" if args.quick else "bench_large_map",
        {"machine": info, "data": data_info, "n_samples": n_samples, "results": results},
    )


if __name__ == "__main__":
    main()
