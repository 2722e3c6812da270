"""KerDenSOM against scikit-learn KMeans and MiniSom on the same data, per pass over the data.

Data: ``make_adk_path(N, snr=0.1, random_state=0)``, 64x64 unmasked, float32,
N = 20000 (5000 with --quick), shared with bench_fit.py through the .npy cache
in the temp folder. Map/cluster count 49 (7x7). Seconds per pass over the
data, all measured in this one run:

* KerDenSOM: one inner iteration is one pass (distances + weighted sums for
  all nodes), timed inside real fits (``annealing_steps=1``, ``tol=0``, a timer
  around the iteration function of ``_training``); default objective
  (likelihood, float32 compute) and ``objective="xmipp"`` (float64 compute).
* KMeans(49, n_init=1, algorithm="lloyd", tol=0) from 49 given samples (no
  k-means++), float32; every Lloyd iteration timed inside the fit (a timer
  around ``sklearn.cluster._kmeans.lloyd_iter_chunked_dense``).
* MiniSom(7, 7, D): ``train_batch(X, N)`` is N sequential single-sample updates,
  i.e. one pass; ``train_batch_offline(X, 1)`` is one pass of Kohonen's batch
  algorithm. Both loop over samples in Python, so they are timed on the first
  ``--minisom-samples`` samples (2000) and scaled to N. MiniSom keeps float64
  weights (float32 data are upcast in every operation). Skipped when minisom
  is not installed (pip install minisom).
* The floors, with numpy on the same data: one ``X @ V.T`` (what a Lloyd
  iteration costs at least: its distances) and ``X @ V.T`` plus ``W.T @ X``
  (what an exact KerDenSOM iteration costs at least: distances and the
  membership-weighted sums, 2 x 2NKD flops), each over the whole array and over
  2048-row chunks, best of several; and a gather of every row within its chunk
  (``np.take``, no product), the least that an approximate E-step working on a
  few candidate nodes per sample (rows grouped by node) pays in numpy.
* With --full-fit, also a default KerDenSOM fit end to end, per pass: wall time
  / (n_iter_ + its 5 other passes: 2 frame moments, sample terms, initial
  width, final labels).

Contention on a shared machine only slows runs down: the table shows the best
pass (the JSON keeps every time).

Usage: python benchmarks/bench_peers.py [--quick] [--full-fit]
Writes benchmarks/results/bench_peers[_quick].json.
"""

import argparse
import time
import warnings

import _common
import numpy as np
from sklearn.cluster import KMeans

from sklearn_kerdensom import KerDenSOM

K_COLUMNS, K_ROWS = 7, 7
K = K_COLUMNS * K_ROWS
OTHER_PASSES = 5


def quiet(function):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        result = function()
        return time.perf_counter() - start, result


class PassTimer:
    """Times every call of a module-level function (a pass over the data) while active."""

    def __init__(self, module, name):
        self.module, self.name, self.times = module, name, []

    def __enter__(self):
        self.original = getattr(self.module, self.name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = self.original(*args, **kwargs)
            self.times.append(time.perf_counter() - start)
            return result

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


def kmeans_passes(X, seeds, n_iter, repeats):
    """Wall time of every Lloyd iteration (one pass: assignments + center sums) of real KMeans fits."""
    from sklearn.cluster import _kmeans

    times = []
    for _ in range(repeats):
        with PassTimer(_kmeans, "lloyd_iter_chunked_dense") as timer:
            quiet(lambda: KMeans(K, init=seeds, n_init=1, max_iter=n_iter, tol=0.0, algorithm="lloyd").fit(X))
        times += timer.times
    return times


def product_floors(X, repeats):
    """Best seconds of one ``X @ V.T`` and of it plus ``W.T @ X``, whole and in 2048-row chunks, and of a
    row gather within each chunk."""
    rng = np.random.default_rng(0)
    V = X[rng.choice(len(X), K, replace=False)].copy()
    W = rng.dirichlet(np.ones(K), size=len(X)).astype(X.dtype)
    chunks = [slice(start, start + 2048) for start in range(0, len(X), 2048)]

    def distances(parts):
        for part in parts:
            X[part] @ V.T

    def both(parts):
        for part in parts:
            X[part] @ V.T
            W[part].T @ X[part]

    # Rows reordered within each chunk (by nearest node, say) before any product: what an E-step that
    # works on a few candidate nodes per sample pays at least with numpy and BLAS alone.
    orders = [rng.permutation(len(X[part])) for part in chunks]
    reordered = np.empty((len(orders[0]), X.shape[1]), X.dtype)

    def gather(parts):
        for part, order in zip(parts, orders, strict=True):
            np.take(X[part], order, axis=0, out=reordered[: len(order)])

    whole = [slice(None)]
    floors = {
        "numpy X @ V.T (one product, whole array)": lambda: distances(whole),
        "numpy X @ V.T (one product, 2048-row chunks)": lambda: distances(chunks),
        "numpy X @ V.T + W.T @ X (two products, whole array)": lambda: both(whole),
        "numpy X @ V.T + W.T @ X (two products, 2048-row chunks)": lambda: both(chunks),
        "numpy row gather (np.take within 2048-row chunks, no product)": lambda: gather(chunks),
    }
    rows = []
    for method, function in floors.items():
        function()
        times = _common.repeat_times(function, repeats)
        rows.append({"method": method, "seconds_per_pass": min(times), "times": times})
        print(f"  {method}: {min(times):.3f} s", flush=True)
    return rows


def full_fit_row(X, quick):
    full_seconds, full = quiet(
        lambda: KerDenSOM(K_COLUMNS, K_ROWS, random_state=0, max_iter=20 if quick else 200).fit(X)
    )
    passes = full.n_iter_ + OTHER_PASSES
    return {
        "method": f"KerDenSOM default fit, whole ({full.n_iter_}+{OTHER_PASSES} passes, {full_seconds:.1f} s)",
        "seconds_per_pass": full_seconds / passes,
        "fit_seconds": full_seconds,
        "n_iter": int(full.n_iter_),
        "iterations_per_step": [int(h["n_iter"]) for h in full.annealing_history_],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=5000 and fewer passes")
    parser.add_argument(
        "--minisom-samples",
        type=int,
        default=2000,
        help="samples MiniSom is timed on; its per-pass time is scaled to N (default 2000)",
    )
    parser.add_argument(
        "--full-fit",
        action="store_true",
        help="also time a default KerDenSOM fit end to end (minutes at N=20000)",
    )
    args = parser.parse_args()
    n_samples = 5000 if args.quick else 20000
    m = 3 if args.quick else 6
    repeats = 1 if args.quick else 2
    if args.quick:
        args.minisom_samples = min(args.minisom_samples, 500)

    info = _common.machine_info()
    _common.print_header(f"bench_peers: make_adk_path({n_samples}), 64x64 unmasked float32, 49 nodes", info)
    X, data_info = _common.load_adk_path(n_samples)
    print(f"X: {X.shape} {X.dtype}, {X.nbytes / 1e6:.0f} MB")
    rows = []

    for objective in ("likelihood", "xmipp"):
        times = _common.fit_iteration_times(X, 1 + m, objective, repeats, (K_COLUMNS, K_ROWS))
        rows.append(
            {
                "method": f"KerDenSOM {objective} (inner iteration)",
                "seconds_per_pass": min(times),
                "median": float(np.median(times)),
                "times": times,
            }
        )
        print(f"  {rows[-1]['method']}: {min(times):.3f} s/pass (median {np.median(times):.3f})", flush=True)

    seeds = X[np.random.default_rng(0).choice(n_samples, K, replace=False)]
    times = kmeans_passes(X, seeds, 1 + m, repeats)
    rows.append(
        {
            "method": "sklearn KMeans lloyd (iteration)",
            "seconds_per_pass": min(times),
            "median": float(np.median(times)),
            "times": times,
        }
    )
    print(f"  {rows[-1]['method']}: {min(times):.3f} s/pass (median {np.median(times):.3f})", flush=True)

    rows += product_floors(X, 3 if args.quick else 8)

    try:
        import minisom
        from minisom import MiniSom
    except ImportError:
        MiniSom = None
        print("  minisom not installed: skipped (pip install minisom)")
    if MiniSom is not None:
        from importlib.metadata import version as package_version

        info["minisom"] = package_version("minisom")
        # MiniSom loops over samples in Python, so a pass costs N times one sample's work: it is timed
        # on the first n_sub samples and scaled to N (--minisom-samples N times the whole pass).
        n_sub = min(args.minisom_samples, n_samples)
        subset = X[:n_sub]
        som = MiniSom(K_COLUMNS, K_ROWS, X.shape[1], sigma=1.0, learning_rate=0.5, random_seed=0)
        som.random_weights_init(X)
        trainings = {
            f"MiniSom train_batch (N single-sample updates; {n_sub} timed)": lambda: som.train_batch(
                subset, n_sub
            ),
            f"MiniSom train_batch_offline (1 batch iteration; {n_sub} timed)": lambda: (
                som.train_batch_offline(subset, 1)
            ),
        }
        for method, train in trainings.items():
            seconds, _ = quiet(train)
            rows.append(
                {
                    "method": method,
                    "seconds_per_pass": seconds * n_samples / n_sub,
                    "timed_samples": n_sub,
                    "seconds": seconds,
                }
            )
            print(f"  {method}: {rows[-1]['seconds_per_pass']:.3f} s/pass", flush=True)
        del minisom

    if args.full_fit:
        rows.append(full_fit_row(X, args.quick))
        print(f"  {rows[-1]['method']}: {rows[-1]['seconds_per_pass']:.3f} s/pass", flush=True)

    ours = rows[0]["seconds_per_pass"]
    kmeans = next(r["seconds_per_pass"] for r in rows if r["method"].startswith("sklearn KMeans"))
    print()
    _common.table(
        ["method", "s/pass", "x KerDenSOM likelihood", "x KMeans"],
        [
            [r["method"], r["seconds_per_pass"], r["seconds_per_pass"] / ours, r["seconds_per_pass"] / kmeans]
            for r in rows
        ],
        {1: ".3f", 2: ".2f", 3: ".2f"},
    )
    print(
        "x KerDenSOM likelihood / x KMeans: seconds per pass relative to the KerDenSOM likelihood inner "
        "iteration / to a KMeans Lloyd iteration (> 1: slower)."
    )
    name = "bench_peers_quick" if args.quick else "bench_peers"
    _common.write_json(
        name,
        {
            "benchmark": "bench_peers",
            "quick": args.quick,
            "machine": info,
            "data": {"n_samples": n_samples, "shape": list(X.shape), "dtype": X.dtype.name, **data_info},
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
