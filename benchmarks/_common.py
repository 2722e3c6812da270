"""Shared helpers of the benchmark scripts: machine info, timing, child processes, data cache, output.

Not part of the package; the scripts import it as a sibling module
(``python benchmarks/bench_*.py`` puts this folder on ``sys.path``).
"""

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MIB = 2**20
# Simulated particles are expensive to make (see bench_fit.py); they are made once per
# machine, in a child process, and cached here as .npy files.
CACHE = Path(tempfile.gettempdir()) / "sklearn_kerdensom_bench"


def machine_info():
    """CPU count, library versions and threadpoolctl's view of BLAS/OpenMP."""
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    try:
        import sklearn_kerdensom

        package_version = sklearn_kerdensom.__version__
    except Exception as error:  # pragma: no cover - informational only
        package_version = f"unavailable ({error})"
    cpu_model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "sklearn_kerdensom": package_version,
        "threadpools": threadpool_info(),
    }


def blas_summary(info):
    """One line about the BLAS numpy uses, for the printed header."""
    pools = [p for p in info["threadpools"] if p.get("user_api") == "blas"]
    numpy_pool = next((p for p in pools if "numpy" in p.get("filepath", "")), pools[0] if pools else None)
    if numpy_pool is None:
        return "BLAS: unknown"
    return (
        f"BLAS (numpy): {numpy_pool.get('internal_api')} {numpy_pool.get('version')} "
        f"{numpy_pool.get('architecture')} threads={numpy_pool.get('num_threads')}"
    )


def print_header(title, info):
    print(f"== {title}")
    print(
        f"cpus={info['cpu_count']} ({info['cpu_model']})  numpy {info['numpy']}  scipy {info['scipy']}  "
        f"sklearn {info['sklearn']}  sklearn_kerdensom {info['sklearn_kerdensom']}"
    )
    print(blas_summary(info))


def write_json(name, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    with open(path, "w") as stream:
        json.dump(payload, stream, indent=2, default=_jsonable)
        stream.write("\n")
    print(f"wrote {path}")
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _timer(function, times):
    """``function`` that appends the wall time of each of its calls to ``times``."""

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return result

    return timed_call


@contextlib.contextmanager
def iteration_times():
    """Wall time of every inner iteration of the fits made inside the block: a list, filled as they
    run, by a timer around the iteration functions of ``sklearn_kerdensom._training``; the init
    passes, the PCA and the final labels are not counted."""
    from sklearn_kerdensom import _training

    table = _training._ITERATIONS
    originals = dict(table)
    times = []
    table.update({objective: _timer(iteration, times) for objective, iteration in originals.items()})
    try:
        yield times
    finally:
        table.update(originals)


@contextlib.contextmanager
def call_times(module, name):
    """Wall time of every call of ``module.name`` made inside the block (through the module's global)."""
    original = getattr(module, name)
    times = []
    setattr(module, name, _timer(original, times))
    try:
        yield times
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def peak_rss_anon():
    """This process's ``RssAnon`` sampled every 20 ms while the block runs: a dict with ``baseline``
    (KiB, on entry) and ``peak`` (KiB, the largest sample, updated until the block ends). Pages of a
    memory-mapped file are page cache, not anonymous memory."""
    import threading

    memory = {"baseline": proc_status_kib("RssAnon")}
    memory["peak"] = memory["baseline"]
    done = threading.Event()

    def sample():
        while not done.is_set():
            memory["peak"] = max(memory["peak"], proc_status_kib("RssAnon"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield memory
    finally:
        done.set()
        sampler.join()
        memory["peak"] = max(memory["peak"], proc_status_kib("RssAnon"))


def fit_iteration_times(X, max_iter, objective="likelihood", repeats=1, map_shape=(7, 7)):
    """Seconds of every inner iteration of ``repeats`` fits of ``KerDenSOM(*map_shape)`` with one
    annealing step and ``tol=0`` (no step stops early), timed by :func:`iteration_times`."""
    import warnings

    from sklearn_kerdensom import KerDenSOM

    with warnings.catch_warnings(), iteration_times() as times:
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            KerDenSOM(
                *map_shape, objective=objective, max_iter=max_iter, annealing_steps=1, tol=0.0, random_state=0
            ).fit(X)
    return times


def repeat_times(function, repeats):
    """Wall times of ``repeats`` calls of ``function()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def table(headers, rows, formats=None):
    """Print a plain aligned table; ``formats`` maps a column index to a format spec."""
    formats = formats or {}
    cells = [
        [format(v, formats.get(i, "")) if not isinstance(v, str) else v for i, v in enumerate(row)]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def proc_status_kib(field, pid="self"):
    """A ``VmXXX`` field of /proc/<pid>/status in KiB (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def write_mrc_stack(path, n_images, size=64, seed=0, sources=None, noise=1.0):
    """A float32 MRC stack of ``n_images`` noisy copies of ``sources`` (default: 8 random images), written
    block by block; ``noise``: the standard deviation of the white noise added to each copy."""
    import mrcfile

    rng = np.random.default_rng(seed)
    if sources is None:
        sources = rng.normal(size=(8, size * size))
    sources = np.asarray(sources, dtype=np.float32).reshape(len(sources), size * size)
    with mrcfile.new_mmap(path, shape=(n_images, size, size), mrc_mode=2) as mrc:
        for start in range(0, n_images, 10_000):
            stop = min(start + 10_000, n_images)
            labels = rng.integers(0, len(sources), stop - start)
            block = sources[labels] + noise * rng.normal(size=(stop - start, size * size)).astype(np.float32)
            mrc.data[start:stop] = block.reshape(-1, size, size)
        mrc.set_image_stack()


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        return True
    except OSError:
        return False


def run_child(code, args=(), env=None, script=None):
    """Run ``python -c code args...`` (or ``python script args...``) and return
    (stdout, wall seconds, ru_maxrss KiB of that child).

    The peak RSS comes from ``os.wait4`` on this very child, so earlier children
    do not leak into it (unlike ``getrusage(RUSAGE_CHILDREN)``, a running max).
    """
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, *([script] if script else ["-c", code]), *map(str, args)],
            stdout=out,
            stderr=err,
            env=child_env,
            cwd=HERE,
        )
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            process.kill()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"child failed with exit code {process.returncode}:\n{stderr[-4000:]}")
    return stdout, wall, usage.ru_maxrss


_MAKE_DATA = """
import sys, time, os, numpy as np
from sklearn_kerdensom.datasets import make_adk_path
n, path = int(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
images = make_adk_path(n, snr=0.1, random_state=0).images
seconds = time.perf_counter() - start
X = np.ascontiguousarray(images.reshape(n, -1), dtype=np.float32)
np.save(path + ".part.npy", X)
os.replace(path + ".part.npy", path)
print(seconds)
"""


def adk_path_file(n_samples):
    """Path of the cached ``make_adk_path(n_samples, snr=0.1, random_state=0)`` vectors, unmasked
    float32 of shape (n_samples, 4096); made in a child process when missing.

    Returns (path, info) where info says how long making them took and their
    generator's peak RSS (None when taken from the cache).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"adk_path_n{n_samples}_snr0.1_rs0_unmasked_float32.npy"
    info = {"cached": True, "path": str(path)}
    if not path.exists():
        print(
            f"making make_adk_path({n_samples}, snr=0.1, random_state=0) in a child process ...", flush=True
        )
        stdout, wall, maxrss = run_child(_MAKE_DATA, (n_samples, path))
        info = {
            "cached": False,
            "path": str(path),
            "make_adk_path_seconds": float(stdout.split()[-1]),
            "child_wall_seconds": wall,
            "generator_peak_rss_mib": maxrss / 1024,
        }
        print(
            f"  took {info['make_adk_path_seconds']:.1f} s, generator peak RSS "
            f"{info['generator_peak_rss_mib']:.0f} MiB (data {n_samples * 4096 * 4 / MIB:.0f} MiB)"
        )
    return path, info


def load_adk_path(n_samples):
    path, info = adk_path_file(n_samples)
    return np.load(path), info


def private_e_step(X, objective, n_nodes, kernel="gaussian", df=3.0):
    """A zero-argument callable running one E-step pass over ``X`` through the package's private
    functions, with the dtypes the estimator would pick for ``objective``; None when the private
    API is not one this script knows (the package is being reworked: the fits still measure).

    Code vectors: half-way between ``n_nodes`` samples and the data centre; kernel variance:
    twice the mean per-feature variance, so that memberships are neither one-hot nor uniform.
    """
    from sklearn_kerdensom import _passes
    from sklearn_kerdensom._frame import fit_frame

    if objective == "xmipp":
        dtype, storage = np.dtype(np.float64), X.dtype
    else:
        dtype, storage = X.dtype, np.dtype(np.float64)
    frame = fit_frame(X, False)
    centers = np.asarray(X[:n_nodes], dtype=np.float64) * 0.5 + frame.centre * 0.5
    variance = float(np.mean(np.var(X[:256], axis=0, dtype=np.float64))) * 2.0
    try:  # reworked API: a samples object that runs chunked passes
        from sklearn_kerdensom._samples import samples_of

        samples = samples_of(X, frame, dtype, n_nodes).cache_terms()
        return lambda: _passes.e_step(samples, centers, variance, kernel, df, storage)
    except ImportError:
        pass
    try:  # original API: e_step(X, frame, centers, variance, kernel, df, dtype, storage_dtype, sample_terms)
        terms = _passes.precomputed_sample_terms(X, frame, dtype)
        return lambda: _passes.e_step(X, frame, centers, variance, kernel, df, dtype, storage, terms)
    except (AttributeError, TypeError):
        return None
