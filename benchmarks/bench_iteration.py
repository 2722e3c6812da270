"""Seconds per inner iteration of KerDenSOM, against this machine's own matrix-multiply rate.

One inner iteration is one chunked pass over the data with two products,
``chunk @ centers.T`` and ``weights.T @ chunk`` (4*N*K*D flops), plus a small
M-step. For N in {2000, 20000}, D = 4096 (64x64 images), K = 49 (7x7 map),
float32 and float64 data, and both objectives, this script measures:

* ``ms/iter``: seconds per inner iteration of real fits (``annealing_steps=1``,
  ``tol=0``, ``max_iter=1+m``), each iteration timed inside the fit (a timer
  around the iteration function of ``_training``), so the init passes are not
  counted; best and median over all iterations. Cross-check ``(diff.)``:
  fits with ``max_iter=1`` and ``1+m`` differenced and divided by the
  difference of ``n_iter_`` (noisier on a shared machine).
* ``E %`` / ``M %``: the share of that iteration spent in the E-step pass and
  in the M-step solver (timers wrapped around ``_training.e_step`` and the
  solvers during the longer fit).
* ``e_step ms``: the pass alone through the private ``_passes.e_step``.
* ``mm GF/s``: numpy ``X @ V.T`` (2*N*K*D flops) in the data dtype; ``ratio`` =
  achieved GFLOP/s of the iteration (4*N*K*D / s_iter) / ``mm GF/s``.
  ``xmipp`` computes in float64 whatever the data dtype (on purpose), so
  ``ratio/compute`` compares with the matmul in the compute dtype.

The machine is shared and noisy: each configuration runs interleaved rounds
(matmul, short fit, long fit, E-step) and the table shows the best of each
over the rounds (contention only ever slows a run down); the JSON keeps every
time.

Usage: python benchmarks/bench_iteration.py [--quick] [--repeats R]
Writes benchmarks/results/bench_iteration.json (or bench_iteration_quick.json).
"""

import argparse
import time
import warnings

import _common
import numpy as np

from sklearn_kerdensom import KerDenSOM, _training

K_COLUMNS, K_ROWS = 7, 7
K = K_COLUMNS * K_ROWS


class PhaseTimers:
    """Wraps the E-step and the M-step solvers of ``_training`` (those that exist) with timers."""

    names = ("e_step", "solve_exactly", "gauss_seidel_sweeps")

    def __init__(self):
        self.seconds = dict.fromkeys(self.names, 0.0)
        self.calls = dict.fromkeys(self.names, 0)
        self.sweeps = 0
        self._originals = {}
        self._iteration_timer = _common.iteration_times()

    def __enter__(self):
        self.iterations = self._iteration_timer.__enter__()  # wall time of every inner iteration
        for name in self.names:
            original = getattr(_training, name, None)
            if original is None:
                continue
            self._originals[name] = original

            def wrapper(*args, _name=name, _original=original, **kwargs):
                start = time.perf_counter()
                result = _original(*args, **kwargs)
                self.seconds[_name] += time.perf_counter() - start
                self.calls[_name] += 1
                if _name == "gauss_seidel_sweeps":
                    self.sweeps += result[1]
                return result

            setattr(_training, name, wrapper)
        return self

    def __exit__(self, *exc):
        for name, original in self._originals.items():
            setattr(_training, name, original)
        self._iteration_timer.__exit__(*exc)

    def per_call(self, name):
        return self.seconds[name] / self.calls[name] if self.calls[name] else float("nan")


def fit_seconds(X, objective, max_iter):
    som = KerDenSOM(
        K_COLUMNS, K_ROWS, max_iter=max_iter, annealing_steps=1, tol=0.0, objective=objective, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        som.fit(X)
        seconds = time.perf_counter() - start
    return seconds, som.n_iter_


def best_time(function, repeats):
    function()  # warm-up
    return min(_common.repeat_times(function, repeats))


def measure(X, same_shape, V, objective, a, m, rounds):
    """Interleaved rounds of: matmul rates, fit(max_iter=a), instrumented fit(max_iter=a+m), E-step.

    On a shared machine, contention only ever slows a measurement down, so the
    headline figures are bests over the rounds (medians are kept in the JSON).
    """
    e_step = _common.private_e_step(X, objective, K)
    log = {
        "mm": {d: [] for d in V},
        "short": [],
        "long": [],
        "e_step": [],
        "e_in_fit": [],
        "m_in_fit": [],
        "sweeps": [],
        "iterations": [],
    }
    solver = "gauss_seidel_sweeps" if objective == "xmipp" else "solve_exactly"
    for _ in range(rounds):
        for d in V:
            log["mm"][d].append(best_time(lambda d=d: same_shape[d] @ V[d].T, 3))
        log["short"].append(fit_seconds(X, objective, a))
        with PhaseTimers() as timers:
            log["long"].append(fit_seconds(X, objective, a + m))
        log["iterations"] += timers.iterations
        log.setdefault("e_total", []).append(timers.seconds["e_step"])
        log.setdefault("m_total", []).append(timers.seconds[solver])
        log.setdefault("iteration_total", []).append(sum(timers.iterations))
        log["e_in_fit"].append(timers.per_call("e_step"))
        log["m_in_fit"].append(timers.per_call(solver))
        log["sweeps"].append(timers.sweeps / max(timers.calls["gauss_seidel_sweeps"], 1))
        if e_step is not None:
            log["e_step"].append(min(_common.repeat_times(e_step, 2)))
    pairs = [(lb[0] - la[0]) / max(lb[1] - la[1], 1) for la, lb in zip(log["short"], log["long"])]
    log["differenced_median"] = float(np.median(pairs))
    if log["iterations"]:  # timed directly inside the fits
        return float(np.min(log["iterations"])), float(np.median(log["iterations"])), log
    t_a, n_a = min(log["short"])
    t_b, n_b = min(log["long"])
    return (t_b - t_a) / max(n_b - n_a, 1), log["differenced_median"], log


def blas_shapes(n_features, repeats):
    """The products of one pass on one 2048-row chunk, in both orientations, with all BLAS threads
    and with one: ``chunk @ V.T``, ``W.T @ chunk`` (what the pass computes), ``(chunk.T @ W).T``
    (the same numbers), and the node-sized ``P @ V`` of the roughness (49x49 @ 49xD, float64)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    rows = []
    for dtype in ("float32", "float64"):
        chunk = rng.standard_normal((2048, n_features)).astype(dtype)
        W = rng.random((2048, K)).astype(dtype)
        V = rng.standard_normal((K, n_features)).astype(dtype)
        flops = 2.0 * 2048 * K * n_features
        products = {
            "chunk @ V.T": (lambda: chunk @ V.T, flops),
            "W.T @ chunk": (lambda: W.T @ chunk, flops),
            "(chunk.T @ W).T": (lambda: (chunk.T @ W).T, flops),
        }
        if dtype == "float64":
            P = rng.standard_normal((K, K))
            products["P @ V (49x49 @ 49xD)"] = (lambda: P @ V, 2.0 * K * K * n_features)
        for name, (function, n_flops) in products.items():
            timings = {}
            for threads in (None, 1):
                if threads is None:
                    timings["all"] = best_time(function, repeats)
                else:
                    with threadpool_limits(threads, user_api="blas"):
                        timings["one"] = best_time(function, repeats)
            rows.append(
                {
                    "dtype": dtype,
                    "product": name,
                    "ms_all_threads": timings["all"] * 1e3,
                    "ms_one_thread": timings["one"] * 1e3,
                    "gflops_all_threads": n_flops / timings["all"] / 1e9,
                }
            )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds per configuration")
    args = parser.parse_args()

    sizes = [1000] if args.quick else [2000, 20000]
    n_features = 1024 if args.quick else 4096
    rounds = args.repeats or (1 if args.quick else 3)
    info = _common.machine_info()
    _common.print_header(f"bench_iteration: K={K}, D={n_features}, N in {sizes}", info)
    rng = np.random.default_rng(0)
    records = []
    for n in sizes:
        X64 = rng.standard_normal((n, n_features))
        X32 = X64.astype(np.float32)
        same_shape = {"float32": X32, "float64": X64}
        V = {d: rng.standard_normal((K, n_features)).astype(d) for d in ("float32", "float64")}
        flops = 4.0 * n * K * n_features
        m = 3 if args.quick else (15 if n <= 5000 else 5)
        for X in (X32, X64):
            dtype = X.dtype
            for objective in ("likelihood", "xmipp"):
                compute = "float64" if objective == "xmipp" else dtype.name
                s_best, s_median, log = measure(X, same_shape, V, objective, 1, m, rounds)
                mm = {d: 2.0 * n * K * n_features / min(t) / 1e9 for d, t in log["mm"].items()}
                achieved = flops / s_best / 1e9
                e_best = min(log["e_step"]) if log["e_step"] else float("nan")
                record = {
                    "n_samples": n,
                    "n_features": n_features,
                    "n_nodes": K,
                    "dtype": dtype.name,
                    "objective": objective,
                    "compute_dtype": compute,
                    "fits_max_iter": [1, 1 + m],
                    "seconds_per_iteration": s_best,
                    "seconds_per_iteration_median": s_median,
                    "seconds_per_iteration_differenced_median": log["differenced_median"],
                    "e_step_in_fit_s": min(log["e_in_fit"]),
                    "m_step_in_fit_s": min(log["m_in_fit"]),
                    "e_step_share": sum(log["e_total"]) / sum(log["iteration_total"]),
                    "m_step_share": sum(log["m_total"]) / sum(log["iteration_total"]),
                    "gs_sweeps_per_iteration": float(np.median(log["sweeps"]))
                    if objective == "xmipp"
                    else None,
                    "e_step_direct_best_s": e_best,
                    "achieved_gflops": achieved,
                    "matmul_gflops": mm,
                    "ratio_to_matmul_same_dtype": achieved / mm[dtype.name],
                    "ratio_to_matmul_compute_dtype": achieved / mm[compute],
                    "e_step_direct_ratio_to_matmul_same_dtype": flops / e_best / 1e9 / mm[dtype.name],
                    "log": log,
                }
                records.append(record)
                print(
                    f"  N={n} {dtype.name} {objective}: {s_best * 1e3:.1f} ms/iter (median {s_median * 1e3:.1f}, "
                    f"differenced {log['differenced_median'] * 1e3:.1f}); {achieved:.1f} GF/s; "
                    f"mm {mm[dtype.name]:.1f} GF/s",
                    flush=True,
                )
        del X64, X32, same_shape
    print()
    headers = [
        "N",
        "dtype",
        "objective",
        "compute",
        "ms/iter",
        "(median)",
        "(diff.)",
        "e_step ms",
        "E %",
        "M %",
        "GS sweeps",
        "GF/s",
        "mm GF/s",
        "ratio",
        "ratio/compute",
        "e_step ratio",
    ]
    rows = []
    for r in records:
        s_iter = r["seconds_per_iteration"]
        rows.append(
            [
                r["n_samples"],
                r["dtype"],
                r["objective"],
                r["compute_dtype"],
                s_iter * 1e3,
                r["seconds_per_iteration_median"] * 1e3,
                r["seconds_per_iteration_differenced_median"] * 1e3,
                r["e_step_direct_best_s"] * 1e3,
                100 * r["e_step_share"],
                100 * r["m_step_share"],
                "-" if r["gs_sweeps_per_iteration"] is None else f"{r['gs_sweeps_per_iteration']:.0f}",
                r["achieved_gflops"],
                r["matmul_gflops"][r["dtype"]],
                r["ratio_to_matmul_same_dtype"],
                r["ratio_to_matmul_compute_dtype"],
                r["e_step_direct_ratio_to_matmul_same_dtype"],
            ]
        )
    _common.table(
        headers,
        rows,
        {
            4: ".1f",
            5: ".1f",
            6: ".1f",
            7: ".1f",
            8: ".0f",
            9: ".0f",
            11: ".1f",
            12: ".1f",
            13: ".2f",
            14: ".2f",
            15: ".2f",
        },
    )
    print(
        "ms/iter: wall time of one inner iteration timed inside real fits, best ((median): median over all\n"
        "iterations; (diff.): median over rounds of fits differenced over max_iter, a cross-check);\n"
        "E %/M %: share of the iterations' time in the E-step pass / the M-step solver (sums over the fits);\n"
        "ratio: achieved GF/s (4NKD per iteration) / numpy X @ V.T GF/s (2NKD) in the data dtype, best of each;\n"
        "ratio/compute: against the matmul in the compute dtype (float64 for xmipp); e_step ratio: the private "
        "pass alone."
    )
    shapes = blas_shapes(n_features, 3 if args.quick else 7)
    print()
    print("the products of one 2048-row chunk (best of several), all BLAS threads vs one:")
    _common.table(
        ["dtype", "product", "ms (all threads)", "ms (1 thread)", "GF/s (all)"],
        [
            [r["dtype"], r["product"], r["ms_all_threads"], r["ms_one_thread"], r["gflops_all_threads"]]
            for r in shapes
        ],
        {2: ".2f", 3: ".2f", 4: ".1f"},
    )
    name = "bench_iteration_quick" if args.quick else "bench_iteration"
    _common.write_json(
        name,
        {
            "benchmark": "bench_iteration",
            "quick": args.quick,
            "machine": info,
            "results": records,
            "chunk_products": shapes,
        },
    )


if __name__ == "__main__":
    main()
