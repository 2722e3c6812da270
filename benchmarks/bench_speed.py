"""Time to a finished map, idle and under a competing CPU load, side by side in one run.

Data: ``make_adk_path(N, snr=0.1, random_state=0)``, 64x64 unmasked float32 (4096 features), N = 20000
(5000 with --quick), cached with bench_fit.py. Map 7x7. Every fit runs to the end of its own stopping rule
(``ConvergenceWarning`` ignored) and is timed end to end, from the array to the fitted estimator:

* ``default``: ``KerDenSOM()`` (bending, full dimension, passes on every core, one BLAS thread each);
* ``default, n_jobs=1``: the same on one thread (with --single-thread);
* ``membrane``: ``smoothness="membrane"`` (the previous default's rules, 1000 -> 200);
* ``membrane, tol everywhere, plain EM``: the same with ``tol=1e-7, annealing_tol=1e-7`` (every step to
  1e-7) and ``acceleration=None``: the default fit when issue 14 was filed, as far as parameters reproduce
  it, the baseline of its "10x" target;
* ``subspace K``: ``KerDenSOM(subspace_components=K)`` for each K of --components (default 32);
* ``KMeans(49)``: scikit-learn's KMeans with its defaults (k-means++, one init, Lloyd, tol 1e-4), to
  convergence.

Each is run idle, then with ``--load`` competing processes that spin on the CPU (default: one per core,
what a shared cluster node looks like when its other jobs are busy), best of ``--repeats``. The table gives
seconds, iterations, seconds per iteration, the loaded / idle ratio, and each fit's speed-up against the
default and against the baseline.

    python benchmarks/bench_speed.py [--quick] [--repeats R] [--load P] [--components K ...] [--single-thread]

Writes ``results/bench_speed[_quick].json``.
"""

import argparse
import multiprocessing
import os
import time
import warnings

import _common
import numpy as np
from sklearn.cluster import KMeans

from sklearn_kerdensom import KerDenSOM


def _spin():
    while True:
        pass


class CompetingLoad:
    """``n_processes`` processes that spin on the CPU while the context is open."""

    def __init__(self, n_processes):
        self.n_processes = n_processes
        self.processes = []

    def __enter__(self):
        self.processes = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(self.n_processes)]
        for process in self.processes:
            process.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join()


BASELINE = "membrane, tol everywhere, plain EM"


def fitters(components, single_thread):
    fits = {
        "default": lambda: KerDenSOM(random_state=0),
        **({"default, n_jobs=1": lambda: KerDenSOM(n_jobs=1, random_state=0)} if single_thread else {}),
        "membrane": lambda: KerDenSOM(smoothness="membrane", random_state=0),
        BASELINE: lambda: KerDenSOM(
            smoothness="membrane", tol=1e-7, annealing_tol=1e-7, acceleration=None, random_state=0
        ),
        **{
            f"subspace {k}": (lambda k=k: KerDenSOM(subspace_components=k, random_state=0))
            for k in components
        },
        "KMeans(49)": lambda: KMeans(49, random_state=0),
    }
    return fits


def timed_fit(make, X, repeats):
    best, n_iter = np.inf, None
    for _ in range(repeats):
        estimator = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            estimator.fit(X)
            seconds = time.perf_counter() - start
        best = min(best, seconds)
        n_iter = estimator.n_iter_
    return {"seconds": best, "iterations": int(n_iter)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5000 images")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many fits")
    parser.add_argument("--components", type=int, nargs="+", default=[32], help="subspace fits")
    parser.add_argument("--single-thread", action="store_true", help="also the default with n_jobs=1")
    parser.add_argument("--load", type=int, default=os.cpu_count(), help="competing processes")
    args = parser.parse_args()
    n_samples = 5000 if args.quick else 20000
    info = _common.machine_info()
    _common.print_header(f"bench_speed: {n_samples} x 64^2 images, 7x7 maps, load {args.load}", info)
    X, data_info = _common.load_adk_path(n_samples)
    results = {}
    for name, make in fitters(args.components, args.single_thread).items():
        idle = timed_fit(make, X, args.repeats)
        with CompetingLoad(args.load):
            loaded = timed_fit(make, X, args.repeats)
        results[name] = {"idle": idle, "loaded": loaded}
        print(f"  {name}: {idle['seconds']:.2f} s idle, {loaded['seconds']:.2f} s loaded", flush=True)
    default = results["default"]["idle"]["seconds"]
    baseline = results[BASELINE]["idle"]["seconds"]
    rows = [
        [
            name,
            run["idle"]["seconds"],
            run["idle"]["iterations"],
            run["idle"]["seconds"] / run["idle"]["iterations"],
            run["loaded"]["seconds"],
            run["loaded"]["seconds"] / run["idle"]["seconds"],
            default / run["idle"]["seconds"],
            baseline / run["idle"]["seconds"],
        ]
        for name, run in results.items()
    ]
    _common.table(
        [
            "fit",
            "idle s",
            "iterations",
            "s / iteration",
            "loaded s",
            "loaded / idle",
            "vs default",
            "vs baseline",
        ],
        rows,
        {1: ".2f", 3: ".4f", 4: ".2f", 5: ".2f", 6: ".2f", 7: ".2f"},
    )
    _common.write_json(
        "bench_speed_quick" if args.quick else "bench_speed",
        {"machine": info, "data": data_info, "n_samples": n_samples, "load": args.load, "results": results},
    )


if __name__ == "__main__":
    main()
