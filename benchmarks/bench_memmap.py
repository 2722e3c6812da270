"""Out-of-core fit from a memory-mapped stack: peak anonymous memory and seconds per iteration.

Writes a large float32 MRC stack (default 200 000 images of 64 x 64 = 3.3 GB) to
a temporary directory, then, each in a child process:

* fits ``KerDenSOM(7, 7)`` on the memory-mapped stack (flattened, no copy),
  sampling the process's ``RssAnon`` every 20 ms (pages of the mapped file are
  page cache, not memory the process holds) and reading ``VmHWM`` at the end;
* fits the same map in memory on a subset (default 20 000 images).

Seconds per inner iteration are timed inside each fit (a timer around the
iteration function; ``tol=0`` so no step stops early), after a first fit that
brings the file into the page cache: the best and the median iteration.
(Differencing two fits with different ``max_iter`` gave negative or
impossibly small times on a shared 2-core machine.) Prints a table and writes
``results/bench_memmap.json``.

    python benchmarks/bench_memmap.py            # 200 000 images (needs ~3.3 GB of disk)
    python benchmarks/bench_memmap.py --quick    # 20 000 images
"""

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

RESULTS = Path(__file__).parent / "results"
SIZE = 64


def _fit_child(path, n_images, max_iter, in_memory, queue):
    """Runs in a fresh process: fit and report timings and memory."""
    import warnings

    from sklearn_kerdensom import KerDenSOM
    from sklearn_kerdensom.io import read_stack

    stack = read_stack(path)[:n_images]
    X = stack.reshape(len(stack), -1)  # a view of the memory map: nothing read yet
    if in_memory:
        X = np.array(X)
    with _common.peak_rss_anon() as memory:
        start = time.perf_counter()
        with warnings.catch_warnings(), _common.iteration_times() as iteration_seconds:
            warnings.simplefilter("ignore")
            som = KerDenSOM(7, 7, annealing_steps=1, max_iter=max_iter, tol=0.0, random_state=0).fit(X)
        seconds = time.perf_counter() - start
    queue.put(
        {
            "seconds": seconds,
            "n_iter": som.n_iter_,
            "iteration_seconds": iteration_seconds,
            "rss_anon_before_fit_mb": memory["baseline"] / 1024,
            "peak_rss_anon_mb": memory["peak"] / 1024,
            "vm_hwm_mb": _common.proc_status_kib("VmHWM") / 1024,
        }
    )


def _run(path, n_images, max_iter, in_memory):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_fit_child, args=(path, n_images, max_iter, in_memory, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _per_iteration(path, n_images, in_memory, max_iter):
    """Best and median seconds per inner iteration of a fit, and the fit's report."""
    # A first run brings the file into the page cache, so that the timed run reads it from memory.
    _run(path, n_images, 2, in_memory)
    report = _run(path, n_images, max_iter, in_memory)
    times = report["iteration_seconds"]
    return min(times), float(np.median(times)), report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--subset", type=int, default=20_000)
    args = parser.parse_args()
    n_images = args.images or (20_000 if args.quick else 200_000)
    subset = min(args.subset, n_images)
    max_iter = 12
    data_mb = n_images * SIZE * SIZE * 4 / 2**20

    with tempfile.TemporaryDirectory(prefix="kerdensom-bench-") as directory:
        path = Path(directory) / "stack.mrcs"
        start = time.perf_counter()
        _common.write_mrc_stack(path, n_images, SIZE)
        print(f"wrote {n_images} images ({data_mb:.0f} MB) in {time.perf_counter() - start:.0f} s")
        mapped_best, mapped_median, mapped = _per_iteration(path, n_images, False, max_iter)
        memory_best, memory_median, in_memory = _per_iteration(path, subset, True, max_iter)

    per_image_ratio = (mapped_median / n_images) / (memory_median / subset)
    rows = [
        ("images (memory-mapped fit)", n_images),
        ("float32 data, MB", round(data_mb)),
        ("peak RssAnon of the memory-mapped fit, MB", round(mapped["peak_rss_anon_mb"])),
        ("  of which before the fit (interpreter, libraries), MB", round(mapped["rss_anon_before_fit_mb"])),
        ("VmHWM (includes mapped file pages), MB", round(mapped["vm_hwm_mb"])),
        ("seconds per iteration, memory-mapped (best / median)", f"{mapped_best:.3f} / {mapped_median:.3f}"),
        (
            f"seconds per iteration, in memory, {subset} images (best / median)",
            f"{memory_best:.3f} / {memory_median:.3f}",
        ),
        ("per-image time, memory-mapped / in memory (medians)", round(per_image_ratio, 2)),
        ("peak RssAnon of the in-memory fit, MB", round(in_memory["peak_rss_anon_mb"])),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / ("bench_memmap_quick.json" if args.quick else "bench_memmap.json")
    output.write_text(
        json.dumps({"memory_mapped": mapped, "in_memory": in_memory, "table": dict(rows)}, indent=2)
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
