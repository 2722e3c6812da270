"""A full KerDenSOM fit with the default parameters: wall time, iterations and peak resident memory.

Data: ``make_adk_path(20000, snr=0.1, random_state=0)`` (64x64 simulated AdK
particles), vectorized WITHOUT a mask: X of shape (20000, 4096) float32,
328 MB. The particles are made once in a child process and cached as .npy in
the temp folder (making them is itself slow and memory-hungry; the first run
reports it). Every measurement runs in its own child process (``_fit_child.py``)
and the peak is that child's ``ru_maxrss`` from ``os.wait4`` (cross-checked with
VmHWM of /proc/self/status):

* ``imports``: the interpreter with numpy, scipy, scikit-learn and the package;
* ``data``: the same plus ``np.load`` of X (the baseline of the fit);
* ``fit``: the same plus ``KerDenSOM(7, 7, random_state=0).fit(X)`` (likelihood,
  pca init, bending smoothness, 5 annealing steps 1e4 -> 200, max_iter=200, tol=1e-7), with a
  10 ms VmRSS sampler telling in which phase of fit the peak happens;
* short diagnostic fits (``max_iter=3``, one annealing step, ``tol=0``: memory
  does not depend on the number of iterations) with exact per-phase peaks
  (VmHWM reset at every phase boundary through /proc/self/clear_refs) for
  init pca / random and objective likelihood / xmipp, and one with tracemalloc.

Target: peak RSS of the fit <= 1.25 x data + 150 MB. It is checked two ways:
the whole process (which includes ~190 MB of interpreter and imports that any
scikit-learn estimator pays), and the process less its RSS after the imports.

Usage: python benchmarks/bench_fit.py [--quick] [--no-diagnostics]
(--quick: N = 2000 and max_iter=20.) Writes benchmarks/results/bench_fit[_quick].json.
"""

import argparse
import json

import _common

MB = 1e6
CHILD = str(_common.HERE / "_fit_child.py")


def child(*args):
    stdout, wall, maxrss_kib = _common.run_child(None, args, script=CHILD)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["child_wall_seconds"] = wall
    result["ru_maxrss_mb"] = maxrss_kib * 1024 / MB
    return result


def fit_child(path, probe, objective="likelihood", init="pca", max_iter=200, annealing_steps=5, tol=1e-7):
    return child("fit", path, probe, objective, init, max_iter, annealing_steps, tol)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2000 and max_iter=20 (seconds)")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the per-phase diagnostic fits")
    args = parser.parse_args()
    n_samples = 2000 if args.quick else 20000
    max_iter = 20 if args.quick else 200

    info = _common.machine_info()
    _common.print_header(
        f"bench_fit: make_adk_path({n_samples}), 64x64 unmasked float32, KerDenSOM(7, 7)", info
    )
    path, data_info = _common.adk_path_file(n_samples)

    imports = child("imports")
    data = child("data", path)
    fit = fit_child(path, "sample", max_iter=max_iter)
    data_mb = data["data_mb"]
    target = 1.25 * data_mb + 150.0
    peak = fit["ru_maxrss_mb"]
    over_imports = peak - imports["rss_after_imports_mb"]
    over_data = peak - data["ru_maxrss_mb"]

    print()
    print(
        f"fit wall time: {fit['fit_seconds']:.1f} s, n_iter_={fit['n_iter']} "
        f"({fit['fit_seconds'] / fit['n_iter'] * 1e3:.0f} ms per iteration incl. init), "
        f"iterations per step {fit['iterations_per_step']}, converged {fit['converged_per_step']}"
    )
    if fit["warnings"]:
        print(f"warnings: {fit['warnings']}")
    _common.table(
        ["process", "peak RSS MB", "VmHWM MB", "/ data"],
        [
            [
                "imports only",
                imports["ru_maxrss_mb"],
                imports["vm_hwm_mb"],
                imports["ru_maxrss_mb"] / data_mb,
            ],
            [
                "imports + data (baseline)",
                data["ru_maxrss_mb"],
                data["vm_hwm_mb"],
                data["ru_maxrss_mb"] / data_mb,
            ],
            ["imports + data + fit", peak, fit["vm_hwm_mb"], peak / data_mb],
        ],
        {1: ".0f", 2: ".0f", 3: ".2f"},
    )
    print(
        f"data X: {fit['data_shape']} {fit['data_dtype']} = {data_mb:.0f} MB; "
        f"target 1.25 x data + 150 MB = {target:.0f} MB"
    )
    print(
        f"  whole fit process: {peak:.0f} MB -> {'OK' if peak <= target else 'OVER'} "
        f"({peak / target:.2f} x target)"
    )
    print(
        f"  fit process less its imports ({imports['rss_after_imports_mb']:.0f} MB): {over_imports:.0f} MB -> "
        f"{'OK' if over_imports <= target else 'OVER'} ({over_imports / target:.2f} x target, "
        f"{over_imports / data_mb:.2f} x data)"
    )
    print(f"  fit's own peak over the data baseline: {over_data:.0f} MB = {over_data / data_mb:.2f} x data")
    print("  sampled peak RSS by phase (10 ms VmRSS sampler, MB):")
    _print_phases([("default fit", fit)])

    diagnostics = []
    if not args.no_diagnostics:
        variants = [
            ("likelihood", "pca"),
            ("likelihood", "random"),
            ("xmipp", "pca"),
        ]
        for objective, init in variants:
            diagnostics.append(
                (f"{objective}/{init}", fit_child(path, "clear_refs", objective, init, 3, 1, 0.0))
            )
        tracemalloc_fit = fit_child(path, "tracemalloc", "likelihood", "pca", 3, 1, 0.0)
        print()
        print("exact per-phase peak RSS (VmHWM reset at each phase boundary; max_iter=3, 1 step), MB;")
        print(f"'+data' columns are the peak less the data baseline process ({data['ru_maxrss_mb']:.0f} MB):")
        _print_phases(diagnostics, baseline=data["ru_maxrss_mb"])
        print()
        print("tracemalloc peak of allocations made during each phase (data loaded before tracing), MB:")
        _print_phases([("likelihood/pca", tracemalloc_fit)], entry=False)
        diagnostics.append(("tracemalloc likelihood/pca", tracemalloc_fit))

    name = "bench_fit_quick" if args.quick else "bench_fit"
    _common.write_json(
        name,
        {
            "benchmark": "bench_fit",
            "quick": args.quick,
            "machine": info,
            "data": {"n_samples": n_samples, "vectorization": "unmasked 64x64 -> 4096 float32", **data_info},
            "target_mb": target,
            "imports": imports,
            "data_baseline": data,
            "fit": fit,
            "peak_mb": peak,
            "peak_over_imports_mb": over_imports,
            "peak_over_data_baseline_mb": over_data,
            "peak_over_data_baseline_per_data": over_data / data_mb,
            "diagnostics": dict(diagnostics),
        },
    )


def _print_phases(runs, baseline=None, entry=True):
    phases = []
    for _, r in runs:
        phases += [p for p in r.get("phase_order", []) if p not in phases]
    phases += sorted({p for _, r in runs for p in r["phase_peak_mb"]} - set(phases))
    headers = ["phase"]
    for label, _ in runs:
        headers += [f"{label} peak"] + ([f"{label} +data"] if baseline is not None else [])
    if entry:
        headers += ["s (1st run)"]
    rows = []
    for phase in phases:
        row = [phase]
        for _, r in runs:
            value = r["phase_peak_mb"].get(phase)
            row.append("-" if value is None else f"{value:.0f}")
            if baseline is not None:
                row.append("-" if value is None else f"{value - baseline:+.0f}")
        if entry:
            seconds = runs[0][1]["phase_seconds"].get(phase)
            row.append("-" if seconds is None else f"{seconds:.2f}")
        rows.append(row)
    _common.table(headers, rows)


if __name__ == "__main__":
    main()
