"""Child process of bench_fit.py: measures one process's memory (run by bench_fit.py, not by hand).

python _fit_child.py imports
python _fit_child.py data PATH
python _fit_child.py fit PATH PROBE OBJECTIVE INIT MAX_ITER ANNEALING_STEPS TOL

PROBE is how peaks are attributed to the phases of ``KerDenSOM.fit``:
``sample`` (a thread reads VmRSS every 10 ms; the whole-process peak stays
intact), ``clear_refs`` (the kernel's VmHWM, reset at every phase boundary:
exact per-phase peaks, but the process-wide ru_maxrss is then meaningless) or
``tracemalloc`` (Python/numpy allocations, started after the data are loaded).
Prints one JSON line.
"""

import json
import sys
import threading
import time
import tracemalloc
import warnings

import numpy as np
import sklearn  # noqa: F401  (imported in every mode, so the baselines match)
from _common import proc_status_kib, reset_peak_rss

import sklearn_kerdensom
from sklearn_kerdensom import KerDenSOM, estimator

MB = 1e6
# Names looked up in sklearn_kerdensom.estimator (module functions) and methods of
# (module, class) pairs; those that the package version at hand lacks are skipped,
# so the probe follows the package as it is reworked.
PHASES = (
    "validate_data",
    "fit_frame",
    "precomputed_sample_terms",
    "pca_code_vectors",
    "width_from_nearest",
    "random_memberships",
    "from_memberships",
    "anneal",
    "nearest_nodes",
)
METHOD_PHASES = (
    ("sklearn_kerdensom.estimator", "KerDenSOM", "_validated_input"),
    ("sklearn_kerdensom._samples", "ChunkedSamples", "cache_terms"),
)


def rss_mb(field="VmRSS"):
    value = proc_status_kib(field)
    return None if value is None else value * 1024 / MB


class Tracker:
    def __init__(self, probe):
        self.probe = probe
        self.stack = ["(rest of fit)"]
        self.peak = {}
        self.entry_rss = {}
        self.seconds = {}
        self.calls = {}
        self._starts = []
        self._stop = threading.Event()
        self.samples = 0
        self.order = []
        if probe == "clear_refs":
            reset_peak_rss()
        if probe == "tracemalloc":
            tracemalloc.start()
        if probe == "sample":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            value = rss_mb()
            top = self.stack[-1]
            if value is not None and value > self.peak.get(top, 0.0):
                self.peak[top] = value
            self.samples += 1
            time.sleep(0.01)

    def _close_segment(self):
        top = self.stack[-1]
        if self.probe == "clear_refs":
            value = rss_mb("VmHWM")
            reset_peak_rss()
        elif self.probe == "tracemalloc":
            value = tracemalloc.get_traced_memory()[1] / MB
            tracemalloc.reset_peak()
        else:
            value = rss_mb()
        if value is not None and value > self.peak.get(top, 0.0):
            self.peak[top] = value

    def enter(self, name):
        self._close_segment()
        path = f"{self.stack[-1]}/{name}" if len(self.stack) > 1 else name
        self.stack.append(path)
        if path not in self.order:
            self.order.append(path)
        self.entry_rss.setdefault(path, rss_mb())
        self.calls[path] = self.calls.get(path, 0) + 1
        self._starts.append(time.perf_counter())

    def exit(self):
        self._close_segment()
        path = self.stack.pop()
        self.seconds[path] = self.seconds.get(path, 0.0) + time.perf_counter() - self._starts.pop()

    def finish(self):
        self._stop.set()
        self._close_segment()


def _wrapped(tracker, name, original):
    def wrapper(*args, **kwargs):
        tracker.enter(name)
        try:
            return original(*args, **kwargs)
        finally:
            tracker.exit()

    return wrapper


def instrument(tracker):
    """Wrap the phases of fit that exist in this version of the package; returns their names."""
    import importlib

    found = []
    for name in PHASES:
        if callable(getattr(estimator, name, None)):
            setattr(estimator, name, _wrapped(tracker, name, getattr(estimator, name)))
            found.append(name)
    for module_name, class_name, method in METHOD_PHASES:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        if callable(getattr(owner, method, None)):
            setattr(owner, method, _wrapped(tracker, method, getattr(owner, method)))
            found.append(f"{class_name}.{method}")
    return found


def main():
    mode = sys.argv[1]
    result = {"mode": mode, "rss_after_imports_mb": rss_mb(), "package": sklearn_kerdensom.__file__}
    if mode in ("data", "fit"):
        X = np.load(sys.argv[2])
        result["data_mb"] = X.nbytes / MB
        result["data_shape"] = list(X.shape)
        result["data_dtype"] = X.dtype.name
        result["rss_after_load_mb"] = rss_mb()
    if mode == "fit":
        probe, objective, init = sys.argv[3:6]
        max_iter, annealing_steps, tol = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
        tracker = Tracker(probe)
        instrumented = instrument(tracker)
        som = KerDenSOM(
            7,
            7,
            objective=objective,
            init=init,
            max_iter=max_iter,
            annealing_steps=annealing_steps,
            tol=tol,
            random_state=0,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            som.fit(X)
            wall = time.perf_counter() - start
        tracker.finish()
        result.update(
            probe=probe,
            params={
                "objective": objective,
                "init": init,
                "max_iter": max_iter,
                "annealing_steps": annealing_steps,
                "tol": tol,
            },
            fit_seconds=wall,
            n_iter=int(som.n_iter_),
            iterations_per_step=[int(h["n_iter"]) for h in som.annealing_history_],
            converged_per_step=[bool(h["converged"]) for h in som.annealing_history_],
            sigma=som.sigma_,
            warnings=[str(w.message)[:200] for w in caught],
            instrumented=instrumented,
            phase_order=[*tracker.order, "(rest of fit)"],
            phase_peak_mb=tracker.peak,
            phase_entry_rss_mb=tracker.entry_rss,
            phase_seconds=tracker.seconds,
            phase_calls=tracker.calls,
            rss_samples=tracker.samples,
            rss_after_fit_mb=rss_mb(),
        )
    result["vm_hwm_mb"] = rss_mb("VmHWM")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
