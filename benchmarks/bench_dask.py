"""The same fit in memory and on Dask: seconds per inner iteration, and their ratio.

Data: ``make_adk_path(N, snr=0.1, random_state=0)``, 64x64 unmasked, float32,
N = 20000 (5000 with --quick), shared with bench_fit.py through the .npy cache.
``KerDenSOM(7, 7)`` with ``annealing_steps=1``, ``tol=0``, every inner iteration
timed inside the fit (a timer around the iteration function of ``_training``),
after a warm-up fit, on:

* the NumPy array;
* a Dask array of 2048-row blocks on Dask's default local threads;
* the same Dask array persisted on a ``distributed.LocalCluster`` with one
  single-threaded worker process per core (skipped if ``distributed`` is not
  installed): every iteration ships the code vectors to the workers and their
  node-sized statistics back, as on a real cluster.

Prints the best and median iteration of each and the ratio of medians to the
in-memory fit; writes ``results/bench_dask[_quick].json``.

    python benchmarks/bench_dask.py [--quick]
"""

import argparse
import os
import warnings

import _common
import numpy as np

BLOCK_ROWS = 2048


def iteration_seconds(X, max_iter):
    """Seconds of every inner iteration of a short fit, after a warm-up fit."""
    _common.fit_iteration_times(X, 2)
    return _common.fit_iteration_times(X, max_iter)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=5000")
    args = parser.parse_args()
    n_samples = 5000 if args.quick else 20000
    max_iter = 6 if args.quick else 12

    import dask.array as da

    info = _common.machine_info()
    _common.print_header(f"bench_dask: make_adk_path({n_samples}), 64x64 unmasked float32, 7x7 map", info)
    X, data_info = _common.load_adk_path(n_samples)
    runs = {"in memory (NumPy)": iteration_seconds(X, max_iter)}
    blocks = da.from_array(X, chunks=(BLOCK_ROWS, -1))
    runs[f"Dask, local threads, {BLOCK_ROWS}-row blocks"] = iteration_seconds(blocks, max_iter)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("  distributed not installed: LocalCluster skipped")
    else:
        workers = os.cpu_count()
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            with warnings.catch_warnings():
                # The array is sent to the workers once, as a large graph: that is the point of persisting.
                warnings.simplefilter("ignore", UserWarning)
                persisted = blocks.persist()
            name = f"Dask, LocalCluster of {workers} single-threaded workers"
            runs[name] = iteration_seconds(persisted, max_iter)

    reference = float(np.median(runs["in memory (NumPy)"]))
    rows = [
        (name, min(times), float(np.median(times)), float(np.median(times)) / reference)
        for name, times in runs.items()
    ]
    print()
    _common.table(
        ["run", "best s/iter", "median s/iter", "median / in memory"], rows, {1: ".3f", 2: ".3f", 3: ".2f"}
    )
    _common.write_json(
        "bench_dask_quick" if args.quick else "bench_dask",
        {"machine": info, "data": data_info, "block_rows": BLOCK_ROWS, "iteration_seconds": runs},
    )


if __name__ == "__main__":
    main()
