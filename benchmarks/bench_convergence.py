"""Where a default fit's passes go: each annealing step's passes, and the tail of the steps held to ``tol``.

A default ``KerDenSOM()`` fit of ``make_adk_path(N)`` (64x64 px, unmasked, SNR 0.1; N = 20 000, 2000 with
--quick; the cached data of bench_speed.py) in float32 and, on the same values, in float64. For each fit:

* the passes of every annealing step (``annealing_history_``);
* for the first and the last step (those held to ``tol = 1e-7``; the others stop at ``annealing_tol``):
  the iterations (states of the step's path; its passes also count rejected extrapolations) until the
  width's relative change over one EM iteration first fell to 1e-6, the iterations from there to the end
  (the *tail*), the readings of that change in the tail (median, smallest, largest), and how far the width
  moved in the tail, relative to itself (a drift of the fixed point, or noise);
* for the last step, SQUAREM's step lengths ``|r| / |v|`` (see ``sklearn_kerdensom._acceleration``) of
  the code vectors, which the jumps use, and of the width alone (median over the step's cycles).

The float64 fit tells rounding from drift: readings that wobble as much in float64 are no float32
rounding. Prints one table per fit; writes ``results/bench_convergence[_quick].json``.

    python benchmarks/bench_convergence.py [--quick]
"""

import argparse
import warnings

import _common
import numpy as np
from sklearn.metrics import adjusted_rand_score

from sklearn_kerdensom import KerDenSOM, _acceleration, _training

TAIL_FROM = 1e-6


class StepLengths:
    """Records SQUAREM's parabola ratios ``|r| / |v|`` of every cycle of every step, of the code vectors
    (what the jumps use) and of the width alone: it wraps ``_acceleration._parabola`` and, to tell the
    steps apart, ``_training.iterate_squarem``."""

    def __init__(self):
        self.steps = []
        self._parabola = _acceleration._parabola
        self._iterate = _training.iterate_squarem

    def __enter__(self):
        def recording(start, first, second):
            change, curvature = self._parabola(start, first, second)
            curvature_norm = float(np.linalg.norm(curvature))
            length = float(np.linalg.norm(change)) / curvature_norm if curvature_norm else np.inf
            self.steps[-1]["width" if np.isscalar(start) else "code_vectors"].append(length)
            return change, curvature

        def iterate(step, code_vectors, sigma):
            self.steps.append({"code_vectors": [], "width": []})
            return self._iterate(step, code_vectors, sigma)

        _acceleration._parabola = recording
        _training.iterate_squarem = iterate
        return self

    def __exit__(self, *exc):
        _acceleration._parabola = self._parabola
        _training.iterate_squarem = self._iterate


def tail(step):
    """The tail of one step's trace: iterations before and after the change first fell to TAIL_FROM."""
    changes = np.asarray(step.sigma_change)
    below = np.flatnonzero(changes <= TAIL_FROM)
    start = int(below[0]) if below.size else len(changes)
    readings = changes[start:]
    sigmas = np.asarray(step.sigma)
    return {
        "passes": step.n_iter,
        "iterations_to_1e-6": start + 1,
        "tail_iterations": len(readings) - 1 if readings.size else 0,
        "tail_median_change": float(np.median(readings)) if readings.size else np.nan,
        "tail_smallest_change": float(readings.min()) if readings.size else np.nan,
        "tail_largest_change": float(readings.max()) if readings.size else np.nan,
        "tail_width_drift": float(abs(sigmas[-1] / sigmas[start] - 1.0)) if readings.size else np.nan,
    }


def run(X):
    traces = []
    original_anneal = KerDenSOM._anneal

    def recording_anneal(self, *args, **kwargs):
        result = original_anneal(self, *args, **kwargs)
        traces.extend(result[2])  # (code_vectors, sigma, traces, subspace dimensions)
        return result

    KerDenSOM._anneal = recording_anneal
    try:
        with StepLengths() as lengths, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = KerDenSOM(random_state=0).fit(X)
    finally:
        KerDenSOM._anneal = original_anneal
    last = lengths.steps[-1]
    return {
        "passes": model.n_iter_,
        "passes_per_step": [step["n_iter"] for step in model.annealing_history_],
        "first_step": tail(traces[0]),
        "last_step": tail(traces[-1]),
        "last_step_median_length_code_vectors": float(np.median(last["code_vectors"])),
        "last_step_median_length_width": float(np.median(last["width"])),
        "labels": model.labels_,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 images instead of 20 000")
    args = parser.parse_args()
    n_samples = 2000 if args.quick else 20_000
    info = _common.machine_info()
    _common.print_header(f"bench_convergence: default fits of {n_samples} x 64^2", info)
    X, data_info = _common.load_adk_path(n_samples)
    results = {"float32": run(X), "float64": run(X.astype(np.float64))}
    agreement = adjusted_rand_score(results["float32"].pop("labels"), results["float64"].pop("labels"))
    for dtype, result in results.items():
        print(f"\n{dtype}: {result['passes']} passes, per step {result['passes_per_step']}")
        rows = [
            [name, *(result[step][name] for step in ("first_step", "last_step"))]
            for name in result["first_step"]
        ]
        _common.table(["", "first step", "last step"], rows, {1: ".3g", 2: ".3g"})
        print(
            f"last step's SQUAREM step lengths (median): code vectors "
            f"{result['last_step_median_length_code_vectors']:.2f}, width alone "
            f"{result['last_step_median_length_width']:.2f}"
        )
    print(f"\nlabels float32 against float64: adjusted Rand index {agreement:.3f}")
    _common.write_json(
        "bench_convergence" + ("_quick" if args.quick else ""),
        {"machine": info, "data": data_info, "results": results, "labels_ari_float32_float64": agreement},
    )


if __name__ == "__main__":
    main()
